"""A PgBouncer (Debian's ``pgbouncer`` package) in front of a PostgreSQL server, run as
the server's unprivileged OS user (PgBouncer refuses root) on a port of its own, with
its own ini, auth file, socket directory and log in a temporary directory.

The settings pgmodels needs from a pooler:

- ``pool_mode = transaction`` serves predict, train, batch jobs and the proxy: each of
  them is one statement (or one transaction) that needs nothing of the session. The
  per-backend model cache is shared by every client a server connection serves, which
  is safe: what a statement may use is decided per statement, for its role.
- PgBouncer 1.18 (Debian 12) keeps no prepared statements across transactions, so
  clients must not prepare (psycopg: ``prepare_threshold=None``; pgbench: ``-M simple``).
- LISTEN needs a session: the stream worker connects directly, or through a pool in
  ``pool_mode = session``.
- ``auth_query`` lets every role log in with its own password, so predict runs as the
  role that asks and the project's grants apply.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bouncer:
    """A PgBouncer in front of the server on 127.0.0.1:server_port, as the postgres
    superuser with password (auth_user for auth_query); started at once."""

    def __init__(self, server_port: int, password: str, pool_mode: str = "transaction", pool_size: int = 20,
                 max_client_conn: int = 200, port: int | None = None):
        self.dir = Path(tempfile.mkdtemp(prefix="pgmodels-bouncer-"))
        self.dir.chmod(0o755)
        self.port = port or free_port()
        self.password = password
        (self.dir / "userlist.txt").write_text(f'"postgres" "{self.password}"\n')
        (self.dir / "pgbouncer.ini").write_text(f"""[databases]
* = host=127.0.0.1 port={server_port}

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
