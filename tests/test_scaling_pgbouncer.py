"""Everything through PgBouncer (Debian's package) in transaction pooling mode: predict
with its per-backend cache and per-statement deploy check, train, batch jobs, and the
stream worker (whose LISTEN needs a session: it is correct through a transaction pool,
woken by its poll only, and prompt through a session pool). And PgBouncer restarted
under load. One server connection per pool, so every client shares one backend."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from batchhelpers import make_project
from onnx_models import scaled_sum
from scalehelpers import Bouncer
from streamhelpers import insert_rides, regression_project, ride_stream, start_worker, stop_worker, wait_until


@pytest.fixture(scope="module")
def bouncer(cluster, test_db):
    b = Bouncer(cluster, pool_mode="transaction", pool_size=1)
    yield b
    b.close()


def _client(bouncer, dbname, **kw):
    # PgBouncer 1.18 (Debian 12) keeps no server-side prepared statements across
    # transactions: clients turn psycopg's automatic preparing off
    return psycopg.connect(bouncer.url(dbname, **kw), autocommit=True, prepare_threshold=None)


def _import(conn, project, factor, deploy=True):
    return conn.execute("SELECT model_id FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression', deploy => %s)",
                        [project, scaled_sum(factor), deploy]).fetchone()[0]


def test_predict_cache_and_deploy_check_through_a_transaction_pool(bouncer, conn, name, make_role):
    dbname = conn.info.dbname
    a, b = _client(bouncer, dbname), _client(bouncer, dbname)
    try:
        _import(a, name, 1.0)
        second = _import(b, name, 10.0, deploy=False)
        pids = {a.execute("SELECT pg_backend_pid()").fetchone()[0], b.execute("SELECT pg_backend_pid()").fetchone()[0]}
        assert len(pids) == 1  # the two clients share one server backend, and its model cache
        assert a.execute("SELECT predict(%s, ARRAY[1, 2])", [name]).fetchone()[0] == 3.0
        b.execute("SELECT * FROM deploy(%s::bigint)", [second])
        assert a.execute("SELECT predict(%s, ARRAY[1, 2])", [name]).fetchone()[0] == 30.0
        b.execute("SELECT * FROM deploy(%s, 'rollback')", [name])
        assert a.execute("SELECT predict(%s, ARRAY[1, 2])", [name]).fetchone()[0] == 3.0
        # an error in one client's statement never surfaces in the other's next one
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            a.execute("SELECT predict(%s, ARRAY[1, 2, 3, 4, 5])", [name])
        assert b.execute("SELECT predict(%s, ARRAY[2, 2])", [name]).fetchone()[0] == 4.0
        # a transaction of several statements stays on its backend, as one client's
        with a.transaction():
            assert a.execute("SELECT predict(%s, ARRAY[1, 1])", [name]).fetchone()[0] == 2.0
            assert a.execute("SELECT predict(%s, ARRAY[1, 1])", [name]).fetchone()[0] == 2.0
    finally:
        a.close()
        b.close()
    # a role without the grant gets no answer, even from a backend whose cache has the model
    outsider, _ = make_role(name + "_x")
    with _client(bouncer, dbname, user=outsider, password="pw") as x:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            x.execute("SELECT predict(%s, ARRAY[1, 2])", [name])
    conn.execute("SELECT grant_project(%s, %s, 'predict')", [name, outsider])
    with _client(bouncer, dbname, user=outsider, password="pw") as x:
        assert x.execute("SELECT predict(%s, ARRAY[1, 2])", [name]).fetchone()[0] == 3.0


def test_train_and_a_batch_job_through_a_transaction_pool(bouncer, conn, name):
    with _client(bouncer, conn.info.dbname) as c:
        src = make_project(c, name, rows=3000, algorithm="linear")
        c.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, chunk_rows => 1000)",
                  [name, name, src, name + "_out"])
        c.execute("CALL run_batch_job(%s)", [name])  # commits after every chunk: one statement to PgBouncer
        assert c.execute(f"SELECT count(*), count(DISTINCT id) FROM {name}_out").fetchone() == (3000, 3000)
        status = c.execute("SELECT status, rows_scored FROM pgmodels.batch_runs WHERE job = %s", [name]).fetchall()
        assert status == [("succeeded", 3000)]
        c.execute("SELECT drop_batch_job(%s)", [name])


def _stream_setup(conn, name, n):
    regression_project(conn, name + "_m")
    table = ride_stream(conn, name)
    conn.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_c", name + "_m"])
    insert_rides(conn, table, n)
    return table


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_the_stream_worker_through_pgbouncer(cluster, conn, name, mode):
    """LISTEN needs a session. Through a transaction pool the worker still takes every
    event exactly once, found by its poll (--idle-timeout); through a session pool, as
    directly, a notification wakes it."""
    b = bouncer_for(cluster, mode)
    try:
        table = _stream_setup(conn, name, 500)
        worker = start_worker(b.url(conn.info.dbname), name + "_c")
        try:
            out = name + "_c_predictions"
            wait_until(lambda: conn.execute(f"SELECT count(*) FROM {out}").fetchone()[0] == 500)
            insert_rides(conn, table, 300, start=500)
            wait_until(lambda: conn.execute(f"SELECT count(*) FROM {out}").fetchone()[0] == 800)
            assert conn.execute(f"SELECT count(DISTINCT event_id) FROM {out}").fetchone()[0] == 800
        finally:
            assert stop_worker(worker) == 0
    finally:
        b.close()


def bouncer_for(cluster, mode):
    return Bouncer(cluster, pool_mode=mode, pool_size=2)


def test_pgbouncer_restarted_under_load(cluster, conn, name):
    """Clients of a restarted PgBouncer see connection errors (SQLSTATE class 08, or a
    closed connection) for what was in flight, reconnect, and get right answers again;
    never a wrong answer."""
    b = Bouncer(cluster, pool_mode="transaction", pool_size=2)
    _import(conn, name, 1.0)
    stop = threading.Event()
    tally = {"ok": 0, "wrong": 0, "lost": 0, "other": []}

    def load():
        c = None
        while not stop.is_set():
            try:
                if c is None or c.closed:
                    c = _client(b, conn.info.dbname)
                v = c.execute("SELECT predict(%s, ARRAY[1, 2])", [name]).fetchone()[0]
                tally["ok" if v == 3.0 else "wrong"] += 1
            except psycopg.OperationalError:
                tally["lost"] += 1
                if c is not None:
                    c.close()
                time.sleep(0.05)
            except Exception as e:  # noqa: BLE001 - recorded and asserted on
                tally["other"].append(repr(e))
                time.sleep(0.05)
        if c is not None:
            c.close()

    threads = [threading.Thread(target=load) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        wait_until(lambda: tally["ok"] > 50)
        b.stop()
        time.sleep(0.5)
        b.start()
        before = tally["ok"]
        wait_until(lambda: tally["ok"] > before + 50)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        b.close()
    assert tally["wrong"] == 0 and tally["other"] == []
    assert tally["lost"] > 0  # the restart was seen, and survived
