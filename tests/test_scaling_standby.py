"""Hot standbys: a second real cluster made by ``pgmodels db create --standby-of``, that
answers predict once the primary's deploys are replayed, never writes, and behaves as
documented when it lags, when it is promoted and when it is asked to do the impossible."""

from __future__ import annotations

import psycopg
import pytest

from lifecycle_data import make_numeric
from onnx_models import scaled_sum
from scalehelpers import Standby, free_port, pgmodels_cli, temp_home, wait_replayed


@pytest.fixture(scope="module")
def standby(cluster, test_db):
    s = Standby(cluster)
    yield s
    s.close()


def _import(conn, project, factor, deploy=True):
    return conn.execute("SELECT model_id FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression', deploy => %s)",
                        [project, scaled_sum(factor), deploy]).fetchone()[0]


def test_the_standby_is_a_streaming_hot_standby(standby, conn):
    with standby.connect(conn.info.dbname) as s:
        assert s.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
        assert s.execute("SELECT status FROM pg_stat_wal_receiver").fetchone()[0] == "streaming"
        # the environment came with the copy, settings rewritten for the standby's own port
        assert s.execute("SELECT current_setting('port')::int").fetchone()[0] == standby.port
        assert s.execute("SELECT current_setting('pgmodels.venv')").fetchone()[0] == str(standby.primary.venv)
        problems = s.execute("SELECT item, value FROM pgmodels.doctor() WHERE NOT ok").fetchall()
        assert problems == []
    status = pgmodels_cli("db", "status", home=standby.home).stdout
    assert "role: standby" in status and "wal_receiver: streaming" in status
    assert f"port: {standby.port}" in status  # the port it was made with, without PGMODELS_PORT
    assert f"venv: {standby.primary.venv}" in status  # the server's, from its pgmodels.conf


def test_a_model_trained_on_the_primary_serves_on_the_standby(standby, conn, name, make_role):
    make_numeric(conn, name, rows=300)
    conn.execute("SELECT * FROM train(%s, 'classification', %s, 'y', algorithm => 'linear')",
                 [name, name])
    reader, _ = make_role(name + "_r")
    conn.execute("SELECT grant_project(%s, %s, 'predict')", [name, reader])
    row = "ARRAY[5, 7, 1, 2]"
    expected = conn.execute(f"SELECT predict(%s, {row}), predict_proba(%s, {row}), "
                            f"predict_label(%s, {row})", [name, name, name]).fetchone()
    table_sql = f"SELECT array_agg(predict(%s, ARRAY[a, b, c, d]) ORDER BY a, b, c, d) FROM {name}"
    batch = conn.execute(table_sql, [name]).fetchone()[0]
    with standby.connect(conn.info.dbname) as s:
        wait_replayed(conn, s)
        assert s.execute(f"SELECT predict(%s, {row}), predict_proba(%s, {row}), predict_label(%s, {row})",
                         [name, name, name]).fetchone() == expected
        assert s.execute(table_sql, [name]).fetchone()[0] == batch
    # as a LOGIN-only role granted predict on the primary: the grant is replayed too
    with psycopg.connect(host="127.0.0.1", port=standby.port, dbname=conn.info.dbname, user=reader,
                         password="pw", autocommit=True) as r:
        assert r.execute(f"SELECT predict(%s, {row})", [name]).fetchone()[0] == expected[0]


def test_deploy_and_rollback_reach_the_standbys_next_statement(standby, conn, name):
    _import(conn, name, 1.0)
    second = _import(conn, name, 10.0, deploy=False)
    with standby.connect(conn.info.dbname) as s:
        wait_replayed(conn, s)
        # one standby session throughout: its model cache is warm with version 1
        assert s.execute("SELECT predict(%s, ARRAY[1, 2])", [name]).fetchone()[0] == 3.0
        conn.execute("SELECT * FROM deploy(%s::bigint)", [second])
        wait_replayed(conn, s)
        assert s.execute("SELECT predict(%s, ARRAY[1, 2])", [name]).fetchone()[0] == 30.0
        conn.execute("SELECT * FROM deploy(%s, 'rollback')", [name])
        wait_replayed(conn, s)
        assert s.execute("SELECT predict(%s, ARRAY[1, 2])", [name]).fetchone()[0] == 3.0
        # by id, any version, whatever is deployed; predict_batch and the jsonb form
        assert s.execute("SELECT predict(%s::bigint, ARRAY[1, 2])", [second]).fetchone()[0] == 30.0
        assert s.execute("SELECT predict(%s, '{\"a\": 1, \"b\": 2}'::jsonb)", [name]).fetchone()[0] == 3.0
        assert s.execute("SELECT array_agg(p) FROM predict_batch(%s, ARRAY[[1, 2], [2, 2]]::real[]) p",
                         [name]).fetchone()[0] == [3.0, 4.0]


def test_one_standby_statement_never_mixes_versions_while_a_deploy_replays(standby, conn, name):
    """A statement that spans the replay of a deploy (and the cache's one-second look-up
    again) serves one version throughout: the statement's snapshot is a replayed state."""
    import threading
    import time

    _import(conn, name, 1.0)
    second = _import(conn, name, 10.0, deploy=False)
    result = {}
    with standby.connect(conn.info.dbname) as s:
        wait_replayed(conn, s)

        def slow_scoring():
            result["values"] = s.execute(
                "SELECT array_agg(predict(%s, ARRAY[i, 0])) FROM generate_series(1, 60) i, "
                "LATERAL (SELECT pg_sleep(0.03)) z", [name]).fetchone()[0]

        t = threading.Thread(target=slow_scoring)
        t.start()
        time.sleep(0.3)
        conn.execute("SELECT * FROM deploy(%s::bigint)", [second])
        t.join()
        assert {v / i for i, v in enumerate(result["values"], start=1)} == {1.0}
        wait_replayed(conn, s)
        assert s.execute("SELECT predict(%s, ARRAY[1, 0])", [name]).fetchone()[0] == 10.0


def test_predict_on_the_standby_writes_nothing(standby, conn, name):
    """A hot standby refuses any write (catalog update, sequence, temp table, progress
    row) with an error, so predicting there without one shows the path writes nothing;
    and on the primary no transaction id is ever assigned to a predict."""
    _import(conn, name, 2.0)
    with standby.connect(conn.info.dbname) as s:
        wait_replayed(conn, s)
        assert s.execute("SHOW transaction_read_only").fetchone()[0] == "on"
        for _ in range(2):  # a cold backend (first load) and a warm one
            assert s.execute("SELECT predict(%s, ARRAY[1, 2])", [name]).fetchone()[0] == 6.0
            assert s.execute("SELECT pgmodels._model_metadata(%s, pgmodels._credential()) ->> 'name'",
                             [name]).fetchone()[0] == name
        with standby.connect(conn.info.dbname) as fresh:
            assert fresh.execute("SELECT predict_batch(%s, ARRAY[[1, 1]]::real[])", [name]).fetchone()[0] == 4.0
        # errors keep PostgreSQL's style there too, not a read-only failure
        with pytest.raises(psycopg.Error) as e:
            s.execute("SELECT predict('no_such_project_here', ARRAY[1, 2])")
        assert e.value.diag.sqlstate != "25006" and "read-only" not in str(e.value)
        # and what writes says why, in PostgreSQL's words
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            s.execute("SELECT * FROM deploy(%s, 'rollback')", [name])
    with psycopg.connect(standby.primary.url(conn.info.dbname)) as p:
        p.execute("SELECT predict(%s, ARRAY[1, 2])", [name])
        assert p.execute("SELECT pg_current_xact_id_if_assigned()").fetchone()[0] is None
        p.rollback()


def test_a_lagging_standby_serves_the_last_replayed_deployment(standby, conn, name):
    _import(conn, name, 1.0)
    second = _import(conn, name, 10.0, deploy=False)
    with standby.connect(conn.info.dbname) as s:
        wait_replayed(conn, s)
        s.execute("SELECT pg_wal_replay_pause()")
        try:
            conn.execute("SELECT * FROM deploy(%s::bigint)", [second])
            target = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
            assert s.execute("SELECT pg_last_wal_replay_lsn() < %s::pg_lsn", [target]).fetchone()[0]
            # behind, but whole: version 1, and every statement agrees
            assert s.execute("SELECT predict(%s, ARRAY[1, 2])", [name]).fetchone()[0] == 3.0
            assert "replay_paused: true" in pgmodels_cli("db", "status", home=standby.home).stdout
        finally:
            s.execute("SELECT pg_wal_replay_resume()")
        wait_replayed(conn, s)
        assert s.execute("SELECT predict(%s, ARRAY[1, 2])", [name]).fetchone()[0] == 30.0


def test_a_promoted_standby_takes_writes_and_follows_no_more(cluster, conn, name):
    slot = "pgmodels_test_" + name[2:]
    standby = Standby(cluster, slot=slot)
    try:
        assert conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                            [slot]).fetchone() == (True,)
        _import(conn, name, 1.0)
        with standby.connect(conn.info.dbname) as s:
            wait_replayed(conn, s)
        pgmodels_cli("db", "promote", home=standby.home)
        with standby.connect(conn.info.dbname) as s:
            assert s.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
            second = _import(s, name, 10.0)  # it takes writes: a deploy of its own
            assert s.execute("SELECT predict(%s, ARRAY[1, 2])", [name]).fetchone()[0] == 30.0
        # the old primary is untouched, and what it does now no longer reaches the promoted one
        assert conn.execute("SELECT predict(%s, ARRAY[1, 2])", [name]).fetchone()[0] == 3.0
        third = _import(conn, name, 100.0)
        with standby.connect(conn.info.dbname) as s:
            assert s.execute("SELECT predict(%s, ARRAY[1, 2])", [name]).fetchone()[0] == 30.0
        assert second and third
        # promoting twice, or making a standby over the promoted cluster, is refused
        again = pgmodels_cli("db", "promote", home=standby.home, check=False)
        assert again.returncode == 1 and "is not a standby" in again.stderr
        over = pgmodels_cli("db", "create", "--standby-of", cluster.url(), "--port", str(standby.port),
                            home=standby.home, check=False)
        assert over.returncode == 1 and "not a standby" in over.stderr and "Traceback" not in over.stderr
    finally:
        standby.close()
    assert conn.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", [slot]).fetchone()[0] == 0


@pytest.fixture
def bad_home():
    import shutil

    parent = temp_home("pgmodels-badstandby-")
    yield parent / "home"
    shutil.rmtree(parent, ignore_errors=True)


def test_bad_standby_requests_fail_cleanly_and_leave_nothing(cluster, bad_home):
    home = bad_home
    # nobody listens there
    dead = f"postgresql://postgres:x@127.0.0.1:{free_port()}/pgmodels"
    r = pgmodels_cli("db", "create", "--standby-of", dead, "--port", str(free_port()), home=home, check=False)
    assert r.returncode == 1 and "cannot connect to the primary" in r.stderr and "Traceback" not in r.stderr
    assert not (home / "data").exists()
    # the primary's own port
    r = pgmodels_cli("db", "create", "--standby-of", cluster.url(), "--port", str(cluster.port), home=home,
                     check=False)
    assert r.returncode == 1 and f"cannot use port {cluster.port}" in r.stderr
    # a wrong password: pg_basebackup's refusal, and no half-copied data directory
    wrong = cluster.url().replace(cluster.password(), "wrong")
    r = pgmodels_cli("db", "create", "--standby-of", wrong, "--port", str(free_port()), home=home, check=False)
    assert r.returncode == 1 and "password authentication failed" in r.stderr
    assert not (home / "data" / "PG_VERSION").exists()
    r = pgmodels_cli("db", "create", "--standby-of", "postgresql://[", "--port", str(free_port()), home=home,
                     check=False)
    assert r.returncode == 1 and "invalid primary connection string" in r.stderr
    r = pgmodels_cli("db", "create", "--standby-of", cluster.url(), "--slot", "Bad-Name", "--port",
                     str(free_port()), home=home, check=False)
    assert r.returncode == 1 and "invalid replication slot name" in r.stderr
    # a database without the extension
    r = pgmodels_cli("db", "create", "--standby-of", cluster.url("postgres"), "--port", str(free_port()),
                     home=home, check=False)
    assert r.returncode == 1 and "has no pgmodels extension" in r.stderr
