"""stream_maintenance() after it was made to cost what there is to do: a part of the log is
emptied only when every consumer, in every partition, is past all of its events; nothing
is lost; a consumer that is behind keeps its events, also when another transaction holds
every position's xmin back or an event's transaction was still running when a position
was taken; its answer says what remains. Run by the stream's owner, a role with only
LOGIN and the administrator's create_stream and add_consumer grants. Also a tiny run of
benchmarks/bench_stream_maintenance.py (nothing timed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from streamhelpers import ADD_CONSUMER, CREATE_STREAM, drain, insert_rides, regression_project

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def stream(conn, make_role, name):
    """A rides stream owned by a LOGIN role granted create_stream and add_consumer, with
    predict on a regression project; (role connection, stream id). Dropped at the end,
    before the role (its log depends on the role's table)."""
    owner, sid = _owned_stream(conn, make_role, name)
    yield owner, sid
    if owner.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        owner.execute("ROLLBACK")  # a test that failed inside a transaction: its locks go
    conn.execute("SELECT drop_stream(%s, true)", [name])


def _owned_stream(conn, make_role, name: str):
    regression_project(conn, name + "_m")
    role, owner = make_role(name + "_o")
    conn.execute(f"GRANT CREATE ON SCHEMA public TO {role}")
    conn.execute(f"GRANT EXECUTE ON FUNCTION {CREATE_STREAM}, {ADD_CONSUMER} TO {role}")
    conn.execute("SELECT grant_project(%s, %s, 'predict')", [name + "_m", role])
    owner.execute(f"CREATE TABLE {name}_rides (ride_id bigserial PRIMARY KEY, a float8, b float8)")
    owner.execute("SELECT create_stream(%s, %s, 'ride_id')", [name, name + "_rides"])
    sid = owner.execute("SELECT stream_id FROM pgmodels.streams WHERE name = %s", [name]).fetchone()[0]
    return owner, sid


def _maintain(owner, name: str) -> str:
    return owner.execute("SELECT done FROM stream_maintenance(%s)", [name]).fetchone()[0]


def _rotate(conn, owner, name: str, sid: int) -> str:
    """Make inserts move on to the next part of the log (as a minute passing would)."""
    conn.execute("UPDATE pgmodels.stream SET rotated_at = now() - interval '2 minutes' WHERE id = %s", [sid])
    return _maintain(owner, name)


def _parts(conn, sid: int) -> list[int]:
    return [conn.execute(f"SELECT count(*) FROM pgmodels.stream_{sid}_log_{c}").fetchone()[0] for c in range(3)]


def _locked(conn, session, sid: int) -> list[str]:
    """The parts of the log a session holds an ACCESS EXCLUSIVE lock on."""
    return [r[0] for r in conn.execute(
        "SELECT c.oid::regclass::text FROM pg_locks l JOIN pg_class c ON c.oid = l.relation AND c.relkind = 'r' "
        "WHERE l.pid = %s AND l.mode = 'AccessExclusiveLock' AND c.oid::regclass::text LIKE %s ORDER BY 1", [session.info.backend_pid, f"pgmodels.stream_{sid}_log%"])]


def _predictions(owner, consumer: str) -> tuple[int, int]:
    return owner.execute(f"SELECT count(*), count(DISTINCT event_id) FROM {consumer}_predictions").fetchone()


def test_a_part_goes_only_when_every_partition_of_every_consumer_is_past_it(conn, stream, name):
    owner, sid = stream
    owner.execute("SELECT add_consumer(%s, %s, %s, partitions => 4)", [name, name + "_a", name + "_m"])
    owner.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_b", name + "_m"])
    insert_rides(owner, name + "_rides", 200)
    assert "inserts go to 1" in _rotate(conn, owner, name, sid)
    assert _parts(conn, sid) == [200, 0, 0]
    # a has done everything; b nothing: part 0 stays, and the answer says why
    assert drain(owner, name + "_a") == 200
    done = _maintain(owner, name)
    assert "0 kept: a consumer is behind" in done and _parts(conn, sid) == [200, 0, 0], done
    # a part that stays is not left locked, even while the call's transaction goes on
    owner.execute("BEGIN")
    assert "0 kept" in _maintain(owner, name)
    assert _locked(conn, owner, sid) == []
    owner.execute("COMMIT")
    # b done; but one partition of a left behind on newer events (in part 1) keeps part 1
    assert drain(owner, name + "_b") == 200
    insert_rides(owner, name + "_rides", 100, start=200)
    owner.execute("SELECT process_stream(%s, 1000)", [name + "_a"])  # one partition of four only
    done = _maintain(owner, name)
    assert "truncated 0" in done and _parts(conn, sid) == [0, 100, 0], done
    assert "inserts go to 2" in _rotate(conn, owner, name, sid)
    done = _maintain(owner, name)
    assert "1 kept: a consumer is behind" in done and _parts(conn, sid) == [0, 100, 0], done
    drain(owner, name + "_a")
    done = _maintain(owner, name)
    assert "1 kept: a consumer is behind" in done, done  # b has not seen the 100
    drain(owner, name + "_b")
    owner.execute("BEGIN")  # one that goes keeps its lock to the end of the call's transaction
    assert "truncated 1" in _maintain(owner, name)
    assert _locked(conn, owner, sid) == [f"pgmodels.stream_{sid}_log_1"]
    owner.execute("COMMIT")
    assert _parts(conn, sid) == [0, 0, 0]
    # nothing lost, nothing twice
    assert _predictions(owner, name + "_a") == (300, 300) and _predictions(owner, name + "_b") == (300, 300)
    # every consumer's lag was sampled (the budget lets a few consumers through at least)
    assert conn.execute("SELECT count(DISTINCT consumer_id) FROM pgmodels.stream_consumer_sample s "
                        "JOIN pgmodels.stream_consumer c ON c.id = s.consumer_id WHERE c.stream_id = %s",
                        [sid]).fetchone() == (2,)


def test_a_transaction_holding_positions_back_and_one_running_at_a_position(conn, stream, connect, name):
    owner, sid = stream
    owner.execute("SELECT add_consumer(%s, %s, %s, partitions => 3)", [name, name + "_a", name + "_m"])
    elsewhere = connect()
    elsewhere.execute("BEGIN")
    elsewhere.execute("SELECT pg_current_xact_id()")  # every snapshot's xmin stays behind this one
    late = connect()
    late.execute("BEGIN")
    insert_rides(late, name + "_rides", 7)  # events of a transaction running while the position is taken
    insert_rides(owner, name + "_rides", 50, start=7)
    assert drain(owner, name + "_a") == 50
    assert "inserts go to 1" in _rotate(conn, owner, name, sid)
    assert "0 kept: in use" in _maintain(owner, name)  # the running transaction holds part 0
    assert conn.execute("SELECT current_child FROM pgmodels.stream WHERE id = %s", [sid]).fetchone() == (1,)
    late.execute("COMMIT")
    # every event of part 0 is older than every position's xmax, but the late ones'
    # transaction was running in the positions: they are pending, and part 0 stays
    done = _maintain(owner, name)
    assert "0 kept: a consumer is behind" in done and _parts(conn, sid)[0] == 57, done
    assert drain(owner, name + "_a") == 7
    done = _maintain(owner, name)
    assert "truncated 0" in done and _parts(conn, sid)[0] == 0, done  # the xmin is still held back
    elsewhere.execute("ROLLBACK")
    assert _predictions(owner, name + "_a") == (57, 57)


def test_a_part_that_cannot_rotate_says_so_and_a_stream_without_consumers_is_emptied(conn, stream, name):
    owner, sid = stream
    owner.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_a", name + "_m"])
    for i in range(3):  # the three parts full, the consumer behind on all of them
        insert_rides(owner, name + "_rides", 10, start=10 * i)
        _rotate(conn, owner, name, sid)
    assert _parts(conn, sid) == [10, 10, 10]
    done = _rotate(conn, owner, name, sid)
    assert "inserts stay in 2 until 0 is emptied" in done and "0 kept" in done and "1 kept" in done, done
    owner.execute("SELECT drop_consumer(%s, true)", [name + "_a"])
    done = _maintain(owner, name)  # no consumer waits for anything
    assert "truncated 0" in done and "truncated 1" in done and _parts(conn, sid) == [0, 0, 10], done


def test_tiny_run_of_the_benchmark(test_db, tmp_path):
    out = tmp_path / "maint.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_stream_maintenance.py"), "--dsn", test_db,
                           "--consumers", "2", "--partitions", "3", "--events", "300", "--batch", "100",
                           "--repeat", "1", "--out", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    assert results["correct"] and len(results["trials"]) == 8
    assert set(results["cases"]) == {"past, samples due", "past, samples not due", "behind, samples due",
                                     "behind, samples not due"}
    assert all(case["ratio"] > 0 for case in results["cases"].values())
    now = [t for t in results["trials"] if t["side"] == "now"]
    assert all("truncated" in t["done"] for t in now if t["scenario"] == "past")
    assert all("kept: a consumer is behind" in t["done"] for t in now if t["scenario"] == "behind")
    assert results["meta"]["command"].startswith(".pgmodels/venv/bin/python benchmarks/bench_stream_maintenance.py")
    with psycopg.connect(test_db, autocommit=True) as c:  # the harness's stream gone, and its baseline function
        c.execute("SELECT drop_stream('bench_maint', true)")
        assert c.execute("SELECT to_regproc('public.bench_maint_020')").fetchone() == (None,)
