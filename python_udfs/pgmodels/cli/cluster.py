"""The embedded cluster: a private PostgreSQL under the project-local directory.

``pgmodels db create`` makes it (initdb, settings, database ``pgmodels`` with the
extension), ``start``/``stop``/``status`` manage it, ``url`` prints a libpq URL. Every
step is idempotent. initdb and pg_ctl refuse to run as root, so as root the server runs
as the unprivileged ``postgres`` system user, and everything it reads (the virtual
environment, the data directory) is kept readable by it.
"""

from __future__ import annotations

import os
import sys
import pwd
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import OBJECT_NOT_IN_PREREQUISITE_STATE, PgmodelsError

DATABASE = "pgmodels"
SUPERUSER = "postgres"
DEFAULT_PORT = 54329


def _pg_bindir() -> Path:
    pg_config = os.environ.get("PG_CONFIG") or shutil.which("pg_config") or "/usr/lib/postgresql/15/bin/pg_config"
    try:
        out = subprocess.run([pg_config, "--bindir"], check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        raise PgmodelsError("cannot find the PostgreSQL server programs",
                            detail=f"Running {pg_config} --bindir failed: {e}.",
                            hint="Run scripts/install.sh, which installs postgresql-15, or set PG_CONFIG.",
                            sqlstate=OBJECT_NOT_IN_PREREQUISITE_STATE) from None
    return Path(out)


def _configured_port(home: Path) -> str | None:
    """The port an existing cluster was created with (db create --port): its pgmodels.conf."""
    try:
        text = (home / "data" / "pgmodels.conf").read_text()
    except OSError:
        return None
    found = [line.split("=", 1)[1].strip().strip("'") for line in text.splitlines() if line.startswith("port =")]
    return found[0] if found else None


@dataclass
class Cluster:
    home: Path
    port: int

    @classmethod
    def from_env(cls, home: str | None = None) -> "Cluster":
        """The cluster named by --dir, else $PGMODELS_HOME, else the .pgmodels of the
        current directory or one above it, else the one this tool was installed into
        (its virtual environment lives in <home>/venv), else ./.pgmodels (to create)."""
        chosen = home or os.environ.get("PGMODELS_HOME")
        if not chosen:
            here = Path.cwd()
            found = [d / ".pgmodels" for d in (here, *here.parents) if (d / ".pgmodels").is_dir()]
            own = Path(sys.prefix).resolve().parent
            if found:
                chosen = found[0]
            elif (own / "venv").is_dir() and ((own / "data").is_dir() or (own / "password").exists()):
                chosen = own
            else:
                chosen = here / ".pgmodels"
        home = Path(chosen).resolve()
        return cls(home=home, port=int(os.environ.get("PGMODELS_PORT") or _configured_port(home) or DEFAULT_PORT))

    # -- paths ---------------------------------------------------------------
    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home / "run"

    @property
    def log(self) -> Path:
        return self.home / "log" / "server.log"

    @property
    def password_file(self) -> Path:
        return self.home / "password"

    @property
    def venv(self) -> Path:
        return Path(os.environ.get("PGMODELS_VENV") or self.home / "venv").resolve()

    # -- running things as the server user -----------------------------------
    @property
    def server_user(self) -> str:
        if os.geteuid() == 0:
            return os.environ.get("PGMODELS_SERVER_USER", "postgres")
        return pwd.getpwuid(os.geteuid()).pw_name

    def _as_server(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:
            argv = ["runuser", "-u", self.server_user, "--"] + argv
        return subprocess.run(argv, text=True, capture_output=True, **kw)

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam(self.server_user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _check_reachable(self) -> None:
        probe = self._as_server(["test", "-x", str(self.home)])
        if probe.returncode != 0:
            raise PgmodelsError(f'the server user "{self.server_user}" cannot reach {self.home}',
                                detail="The embedded cluster's files must be readable by the user the server runs as.",
                                hint="Run scripts/install.sh, which places the home where that user can reach it.",
                                sqlstate=OBJECT_NOT_IN_PREREQUISITE_STATE)

    # -- state ---------------------------------------------------------------
    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def running(self) -> bool:
        if not self.initialized():
            return False
        result = self._as_server([str(_pg_bindir() / "pg_ctl"), "status", "-D", str(self.data)])
        return result.returncode == 0

    def password(self) -> str:
        try:
            return self.password_file.read_text().strip()
        except OSError:
            raise PgmodelsError(f"there is no embedded cluster in {self.home}",
                                hint='Create one with "pgmodels db create", or point at one with --dir or '
                                     "PGMODELS_HOME.", sqlstate=OBJECT_NOT_IN_PREREQUISITE_STATE) from None

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://{SUPERUSER}:{self.password()}@127.0.0.1:{self.port}/{database}"

    def socket_url(self, database: str = DATABASE) -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}&port={self.port}"

    # -- steps ---------------------------------------------------------------
    def create(self) -> None:
        """initdb (once), write the settings, start, make the database and extensions."""
        self.home.mkdir(parents=True, exist_ok=True)
        self._check_reachable()
        for d in (self.socket_dir, self.log.parent):
            d.mkdir(parents=True, exist_ok=True)
            self._chown(d)
        self.socket_dir.chmod(0o700)
        if not self.password_file.exists():
            self.password_file.write_text(secrets.token_urlsafe(24) + "\n")
            self.password_file.chmod(0o600)
        if not self.initialized():
            self._initdb()
        self._write_settings()
        self.start()
        self._create_database()

    def _initdb(self) -> None:
        self.data.mkdir(mode=0o700, exist_ok=True)
        self._chown(self.data)
        pwfile = self.home / ".initdb-password"
        pwfile.write_text(self.password() + "\n")
        pwfile.chmod(0o600)
        self._chown(pwfile)
        try:
            result = self._as_server([
                str(_pg_bindir() / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                "--pwfile", str(pwfile), "--auth-local=trust", "--auth-host=scram-sha-256",
                "--encoding=UTF8", "--locale=C.UTF-8",
            ])
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            shutil.rmtree(self.data, ignore_errors=True)  # a failed initdb leaves nothing half-made
            raise PgmodelsError("initdb failed", detail=result.stderr.strip()[-2000:],
                                sqlstate=OBJECT_NOT_IN_PREREQUISITE_STATE)
        conf = self.data / "postgresql.conf"
        with conf.open("a") as f:
            f.write("\ninclude_if_exists = 'pgmodels.conf'\n")

    def _write_settings(self) -> None:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "shared_preload_libraries": "pg_cron",
            "cron.database_name": DATABASE,
            "cron.host": str(self.socket_dir),
            "pgmodels.venv": str(self.venv),
            "max_worker_processes": "16",
            # streams' events and predictions leave by logical replication (a publication)
            "wal_level": "logical",
            "logging_collector": "off",
        }
        text = "# written by `pgmodels db create`; rewritten on every run\n" + "".join(
            f"{k} = '{v}'\n" for k, v in settings.items())
        path = self.data / "pgmodels.conf"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            self._chown(path)
            if self.running():
                self._as_server([str(_pg_bindir() / "pg_ctl"), "restart", "-D", str(self.data),
                                 "-l", str(self.log), "-w", "-m", "fast"])

    def start(self) -> None:
        if not self.initialized():
            raise PgmodelsError("the embedded cluster does not exist yet", hint='Run "pgmodels db create".',
                                sqlstate=OBJECT_NOT_IN_PREREQUISITE_STATE)
        if self.running():
            return
        self._check_reachable()
        result = self._as_server([str(_pg_bindir() / "pg_ctl"), "start", "-D", str(self.data),
                                  "-l", str(self.log), "-w", "-t", "60"])
        if result.returncode != 0:
            tail = self.log.read_text()[-1500:] if self.log.exists() else result.stderr
            raise PgmodelsError("the embedded cluster did not start", detail=tail.strip(),
                                sqlstate=OBJECT_NOT_IN_PREREQUISITE_STATE)

    def stop(self) -> None:
        if self.running():
            self._as_server([str(_pg_bindir() / "pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w"])

    def _create_database(self) -> None:
        import psycopg

        from .install import install_extension

        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg.connect(self.socket_url("postgres"), autocommit=True)
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        with conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
                conn.execute(f'CREATE DATABASE "{DATABASE}"')
        with psycopg.connect(self.socket_url(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
            install_extension(conn, venv=None)

    def status(self) -> dict[str, str]:
        state = "running" if self.running() else ("stopped" if self.initialized() else "not created")
        if state == "running" and (self.data / "standby.signal").exists():
            from .standby import standby_status

            return {"state": state, **standby_status(self), "home": str(self.home), "port": str(self.port),
                    "log": str(self.log)}
        return {"state": state, "home": str(self.home), "data": str(self.data), "port": str(self.port),
                "socket": str(self.socket_dir), "log": str(self.log), "venv": str(self.venv)}
