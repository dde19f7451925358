"""Helpers of the scaling tests: hot standbys of the embedded cluster made with the real
``pgmodels db create --standby-of``, and PgBouncer (Debian's package) run as the server's
unprivileged user on a free port, with its own ini and auth file in a temp directory."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from pgmodels.cli.cluster import Cluster

from dbhelpers import ROOT

PGMODELS = str(ROOT / ".pgmodels" / "venv" / "bin" / "pgmodels")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def temp_home(prefix: str) -> Path:
    """A directory under /tmp the server user can reach (it runs as postgres)."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    home.chmod(0o755)
    return home


def pgmodels_cli(*args: str, home: Path | None = None, venv: Path | None = None, check: bool = True):
    env = dict(os.environ)
    env.pop("PGMODELS_PORT", None)
    if venv is not None:
        env["PGMODELS_VENV"] = str(venv)
    argv = [PGMODELS] + (["--dir", str(home)] if home else []) + list(args)
    result = subprocess.run(argv, text=True, capture_output=True, env=env, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"{argv} failed: {result.stderr}")
    return result


class Standby:
    """A streaming hot standby of the embedded cluster, in a home of its own."""

    def __init__(self, primary: Cluster, slot: str | None = None):
        self.primary = primary
        self.parent = temp_home("pgmodels-standby-")
        self.home = self.parent / "home"
        self.port = free_port()
        args = ["db", "create", "--standby-of", primary.url(), "--port", str(self.port)]
        if slot:
            args += ["--slot", slot]
        self.url_line = pgmodels_cli(*args, home=self.home, venv=primary.venv).stdout.strip()
        self.cluster = Cluster(home=self.home, port=self.port)

    def url(self, dbname: str) -> str:
        return self.cluster.url(dbname)

    def connect(self, dbname: str, **kw) -> psycopg.Connection:
        kw.setdefault("autocommit", True)
        return psycopg.connect(self.url(dbname), **kw)

    def close(self) -> None:
        self.cluster.stop()
        shutil.rmtree(self.parent, ignore_errors=True)


def wait_replayed(primary: psycopg.Connection, standby: psycopg.Connection, timeout: float = 30.0) -> None:
    """Until the standby has replayed everything the primary has written so far."""
    target = primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if standby.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target]).fetchone()[0]:
            return
        time.sleep(0.05)
    raise AssertionError(f"the standby did not replay up to {target} in {timeout} s")


# -- PgBouncer --------------------------------------------------------------------------
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


class Bouncer:
    """PgBouncer in front of the embedded cluster, as the server's OS user (pgbouncer
    refuses root), with its own ini, auth file, socket directory and log."""

    def __init__(self, cluster: Cluster, pool_mode: str = "transaction", pool_size: int = 20,
                 max_client_conn: int = 200):
        self.cluster = cluster
        self.dir = temp_home("pgmodels-bouncer-")
        self.port = free_port()
        self.password = cluster.password()
        (self.dir / "userlist.txt").write_text(f'"postgres" "{self.password}"\n')
        (self.dir / "pgbouncer.ini").write_text(f"""[databases]
* = host=127.0.0.1 port={cluster.port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir = {self.dir}
auth_type = scram-sha-256
auth_file = {self.dir}/userlist.txt
auth_user = postgres
auth_query = SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1
pool_mode = {pool_mode}
default_pool_size = {pool_size}
max_client_conn = {max_client_conn}
ignore_startup_parameters = extra_float_digits,options
logfile = {self.dir}/pgbouncer.log
pidfile = {self.dir}/pgbouncer.pid
admin_users = postgres
server_reset_query =
""")
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            for p in [self.dir, *self.dir.iterdir()]:
                os.chown(p, entry.pw_uid, entry.pw_gid)
            (self.dir / "userlist.txt").chmod(0o600)
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        argv = [PGBOUNCER, str(self.dir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--"] + argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2) as c:
                    c.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        log = (self.dir / "pgbouncer.log").read_text() if (self.dir / "pgbouncer.log").exists() else ""
        raise AssertionError(f"pgbouncer did not start: {log[-1500:]}")

    def url(self, dbname: str, user: str = "postgres", password: str | None = None) -> str:
        return f"postgresql://{user}:{password or self.password}@127.0.0.1:{self.port}/{dbname}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: the pgbouncer exits at once, dropping its clients
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
