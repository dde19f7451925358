"""Helpers of the scaling tests: hot standbys of the embedded cluster made with the real
``pgmodels db create --standby-of``, and PgBouncer (Debian's package, see
pgmodels.scale.pgbouncer) in front of it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from pgmodels.cli.cluster import Cluster
from pgmodels.scale.pgbouncer import Bouncer as _Bouncer

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
        """With a replication slot (one is made when none is named), so that a standby the
        tests stop and start again finds the WAL it missed; close() drops it."""
        import uuid

        self.primary = primary
        slot = slot or "pgmodels_test_" + uuid.uuid4().hex[:12]
        self.slot = slot
        self.parent = temp_home("pgmodels-standby-")
        self.home = self.parent / "home"
        self.port = free_port()
        args = ["db", "create", "--standby-of", primary.url(), "--port", str(self.port), "--slot", slot]
        try:
            self.url_line = pgmodels_cli(*args, home=self.home, venv=primary.venv).stdout.strip()
        except BaseException:
            shutil.rmtree(self.parent, ignore_errors=True)
            raise
        self.cluster = Cluster(home=self.home, port=self.port)

    def url(self, dbname: str) -> str:
        return self.cluster.url(dbname)

    def connect(self, dbname: str, **kw) -> psycopg.Connection:
        kw.setdefault("autocommit", True)
        return psycopg.connect(self.url(dbname), **kw)

    def close(self) -> None:
        self.cluster.stop()
        shutil.rmtree(self.parent, ignore_errors=True)
        with psycopg.connect(self.primary.url("postgres"), autocommit=True) as c:
            deadline = time.monotonic() + 15  # until the primary's walsender has noticed
            while c.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                            [self.slot]).fetchone() == (True,) and time.monotonic() < deadline:
                time.sleep(0.1)
            c.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                      "WHERE slot_name = %s AND NOT active", [self.slot])


def wait_replayed(primary: psycopg.Connection, standby: psycopg.Connection, timeout: float = 30.0) -> None:
    """Until the standby has replayed everything the primary has written so far."""
    target = primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if standby.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target]).fetchone()[0]:
            return
        time.sleep(0.05)
    raise AssertionError(f"the standby did not replay up to {target} in {timeout} s")


def Bouncer(cluster: Cluster, **kw) -> _Bouncer:  # noqa: N802 - reads as the class it makes
    """PgBouncer in front of the embedded cluster (see pgmodels.scale.pgbouncer)."""
    return _Bouncer(cluster.port, cluster.password(), **kw)
