"""Fixtures: every test runs against the real embedded cluster.

The cluster is created or reused (``pgmodels db create`` is idempotent); if it cannot
be reached the run stops at once with one clear message instead of failing every test.
Tests share one database, ``pgmodels_test_<pid>``, created fresh per run with
pytest-postgresql's janitor; they use their own project names.
"""

from __future__ import annotations

import os
import uuid

import psycopg
import psycopg.sql
import pytest
from pytest_postgresql.janitor import DatabaseJanitor

from pgmodels.cli.cluster import Cluster

from dbhelpers import ROOT, role_connection

TEST_DB = f"pgmodels_test_{os.getpid()}"  # one per run: runs may overlap


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    os.environ.setdefault("PGMODELS_HOME", str(ROOT / ".pgmodels"))
    c = Cluster.from_env()
    try:
        c.create()
        with psycopg.connect(c.url("postgres"), connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except Exception as e:  # noqa: BLE001 - stop the run with one line, not N failures
        pytest.exit(f"the embedded cluster is not usable: {e}\nRun ./dev.sh test, which installs and starts it.",
                    returncode=3)
    return c


@pytest.fixture(scope="session")
def test_db(cluster: Cluster):
    janitor = DatabaseJanitor(user="postgres", host="127.0.0.1", port=cluster.port, dbname=TEST_DB,
                              password=cluster.password())
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as c:  # left over from an interrupted run
        c.execute(f"DROP DATABASE IF EXISTS {TEST_DB} WITH (FORCE)")
    janitor.init()

    def load(**kw):
        kw.pop("autocommit", None)
        with psycopg.connect(**kw, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pgmodels CASCADE")

    janitor.load(load)
    yield cluster.url(TEST_DB)
    janitor.drop()


@pytest.fixture
def conn(test_db):
    """An autocommit superuser connection to the test database."""
    with psycopg.connect(test_db, autocommit=True) as c:
        yield c


@pytest.fixture
def connect(test_db):
    """Open more connections (other sessions, other roles); all closed at the end."""
    opened = []

    def _connect(**kw):
        kw.setdefault("autocommit", True)
        c = psycopg.connect(test_db, **kw)
        opened.append(c)
        return c

    yield _connect
    for c in opened:
        c.close()


@pytest.fixture
def name():
    """A fresh name for a project or table, so tests never see each other's."""
    return "t_" + uuid.uuid4().hex[:10]


@pytest.fixture
def admin_setting(cluster):
    """Set pgmodels.* settings the administrator's way (ALTER SYSTEM, then reload); new
    sessions see them; every one is reset at the end."""
    changed = []

    def _set(name: str, value: str):
        with psycopg.connect(cluster.url("postgres"), autocommit=True) as c:
            literal = psycopg.sql.Literal(value).as_string(c)
            c.execute(f"SET {name} = {literal}")  # ALTER SYSTEM knows a custom setting once the session has it
            c.execute(f"ALTER SYSTEM SET {name} = {literal}")
            c.execute("SELECT pg_reload_conf()")
        changed.append(name)

    yield _set
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as c:
        for name in changed:
            c.execute(f"ALTER SYSTEM RESET {name}")
        c.execute("SELECT pg_reload_conf()")


@pytest.fixture
def make_role(conn, cluster):
    """Make LOGIN roles with nothing else (USAGE on public aside); returns (name, connection)."""
    made = []

    def _make(rolname: str):
        conn.execute(f"CREATE ROLE {rolname} LOGIN PASSWORD 'pw'")
        conn.execute(f"GRANT USAGE ON SCHEMA public TO {rolname}")
        made.append(rolname)
        return rolname, role_connection(cluster, conn.info.dbname, rolname)

    yield _make
    for rolname in made:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [rolname])
        conn.execute(f"DROP OWNED BY {rolname}")
        conn.execute(f"DROP ROLE {rolname}")


@pytest.fixture
def throwaway_cluster(cluster):
    """A second embedded cluster of its own under /tmp, for tests that stop and restart
    a server (the server user must reach it); removed at the end."""
    import shutil
    import socket
    import tempfile
    from pathlib import Path

    home = Path(tempfile.mkdtemp(prefix="pgmodels-throwaway-"))
    home.chmod(0o755)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    old = os.environ.get("PGMODELS_VENV")
    os.environ["PGMODELS_VENV"] = str(cluster.venv)
    c = Cluster(home=home, port=port)
    try:
        c.create()
        yield c
    finally:
        c.stop()
        shutil.rmtree(home, ignore_errors=True)
        if old is None:
            os.environ.pop("PGMODELS_VENV", None)
        else:
            os.environ["PGMODELS_VENV"] = old


@pytest.fixture
def cron_db(cluster, make_role, name):
    """A superuser connection to pg_cron's database ("pgmodels", cron.database_name), and a
    LOGIN role with a schema of its own there; its jobs, monitors and projects are dropped
    at the end."""
    c = psycopg.connect(cluster.url("pgmodels"), autocommit=True)
    rolname, _ = make_role(name + "_owner")
    c.execute(f"CREATE SCHEMA {name} AUTHORIZATION {rolname}")
    role = role_connection(cluster, "pgmodels", rolname)
    yield c, rolname, role
    role.close()
    c.execute("SELECT pgmodels._cron_unschedule(cron_job_id) FROM pgmodels.monitor WHERE owner::text = %s", [rolname])
    c.execute("DELETE FROM pgmodels.monitor WHERE owner::text = %s", [rolname])
    for (job,) in c.execute("SELECT name FROM pgmodels.batch_job WHERE owner::text = %s", [rolname]).fetchall():
        c.execute("SELECT pgmodels._cron_unschedule(cron_job_id) FROM pgmodels.batch_job WHERE name = %s", [job])
        c.execute("DELETE FROM pgmodels.batch_job WHERE name = %s", [job])
    c.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE command LIKE %s", [f"%{name}%"])
    c.execute(f"DROP SCHEMA {name} CASCADE")
    c.execute("DELETE FROM pgmodels.projects WHERE name = %s", [f"{name}.{name}"])
    c.execute(f"DROP OWNED BY {rolname}")
    c.close()
