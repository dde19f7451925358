"""One consumer's events split into partitions (add_consumer(..., partitions => N)):
workers score different partitions at once, no event is taken twice or missed, all the
events of a key go to one partition in order, and deliveries number in commit order."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from dbhelpers import sql_error
from streamhelpers import drain, insert_rides, pending, regression_project, ride_stream, start_worker, stop_worker, \
    wait_until


def _keyed_stream(conn, name: str) -> str:
    """A stream keyed by a customer that repeats (seven customers), features a and b."""
    table = name + "_events"
    conn.execute(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, customer text, a float8, b float8)")
    conn.execute("SELECT create_stream(%s, %s, 'customer')", [name, table])
    return table


def _insert(conn, table: str, n: int) -> None:
    conn.execute(f"INSERT INTO {table} (customer, a, b) SELECT 'c' || (i %% 7), i %% 13, (i * 5) %% 17 "
                 "FROM generate_series(1, %s) i", [n])


def _in_thread(test_db, consumer: str) -> tuple[threading.Thread, dict]:
    """process_stream(consumer) in its own session and thread; its result and pid."""
    result: dict = {}
    ready = threading.Event()

    def run():
        with psycopg.connect(test_db, autocommit=True) as c:
            result["pid"] = c.info.backend_pid
            ready.set()
            result["n"] = c.execute("SELECT process_stream(%s)", [consumer]).fetchone()[0]

    t = threading.Thread(target=run)
    t.start()
    ready.wait(30)
    return t, result


def _waiting_for_commit(conn, pids: list[int]) -> bool:
    """Every one of these backends has scored its partition and waits for the consumer's
    row lock (deliveries number in commit order)."""
    return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY (%s) AND wait_event_type = 'Lock'",
                        [pids]).fetchone()[0] == len(pids)


def test_three_sessions_score_three_partitions_at_once(conn, connect, test_db, name):
    regression_project(conn, name + "_m")
    table = _keyed_stream(conn, name)
    conn.execute("SELECT add_consumer(%s, %s, %s, partitions => 3)", [name, name + "_c", name + "_m"])
    assert conn.execute("SELECT partitions, events_pending FROM pgmodels.stream_consumers WHERE consumer = %s",
                        [name + "_c"]).fetchone() == (3, 0)
    _insert(conn, table, 700)
    assert pending(conn, name + "_c") == 700
    # a transaction holds one partition; two more sessions take the two others and score
    # them meanwhile (they wait only to commit after it); a fourth finds none free
    first = connect()
    first.execute("BEGIN")
    taken = [first.execute("SELECT process_stream(%s)", [name + "_c"]).fetchone()[0]]
    others = [_in_thread(test_db, name + "_c") for _ in range(2)]
    wait_until(lambda: _waiting_for_commit(conn, [r["pid"] for _, r in others]), 60)
    assert connect().execute("SELECT process_stream(%s)", [name + "_c"]).fetchone()[0] == 0
    first.execute("COMMIT")
    for t, r in others:
        t.join(60)
        taken.append(r["n"])
    assert all(n > 0 for n in taken) and sum(taken) == 700
    assert pending(conn, name + "_c") == 0
    out = name + "_c_predictions"
    assert conn.execute(f"SELECT count(*), count(DISTINCT event_id), count(DISTINCT delivery), min(delivery), "
                        f"max(delivery) FROM {out}").fetchone() == (700, 700, 700, 1, 700)
    # every key in one partition: its events were scored in id order, in one transaction's range
    assert conn.execute(f"""SELECT count(*) FROM (SELECT key, event_id, delivery,
                                   lag(delivery) OVER (PARTITION BY key ORDER BY event_id) AS before FROM {out}) x
                            WHERE x.delivery < x.before""").fetchone()[0] == 0
    assert conn.execute(f"SELECT count(DISTINCT pgmodels._event_part(key, event_id, 3)) FROM {out}"
                        ).fetchone()[0] == 3
    # subscribers read every prediction once, in delivery order
    read = conn.execute("SELECT event_id FROM read_predictions(%s, 0, 10000)", [name + "_c"]).fetchall()
    assert len(read) == 700 and len(set(read)) == 700
    assert conn.execute("SELECT events_processed, failures FROM pgmodels.stream_consumers WHERE consumer = %s",
                        [name + "_c"]).fetchone() == (700, 0)


def test_a_rolled_back_partition_is_scored_again_and_others_keep_theirs(conn, connect, test_db, name):
    regression_project(conn, name + "_m")
    table = _keyed_stream(conn, name)
    conn.execute("SELECT add_consumer(%s, %s, %s, partitions => 2)", [name, name + "_c", name + "_m"])
    _insert(conn, table, 300)
    first = connect()
    first.execute("BEGIN")
    got_first = first.execute("SELECT process_stream(%s)", [name + "_c"]).fetchone()[0]
    t, other = _in_thread(test_db, name + "_c")
    wait_until(lambda: _waiting_for_commit(conn, [other["pid"]]), 60)
    first.execute("ROLLBACK")  # a worker dies: its partition's events stay pending
    t.join(60)
    assert got_first + other["n"] == 300 and pending(conn, name + "_c") == got_first
    assert drain(conn, name + "_c") == got_first
    assert conn.execute(f"SELECT count(*), count(DISTINCT event_id), max(delivery) FROM {name}_c_predictions"
                        ).fetchone() == (300, 300, 300)


def test_two_workers_on_one_partitioned_consumer_under_producers(conn, test_db, name):
    regression_project(conn, name + "_m")
    table = ride_stream(conn, name)
    conn.execute("SELECT add_consumer(%s, %s, %s, partitions => 2)", [name, name + "_c", name + "_m"])
    workers = [start_worker(test_db, name + "_c"), start_worker(test_db, name + "_c")]
    try:
        def produce():
            with psycopg.connect(test_db, autocommit=True) as p:
                for _ in range(10):
                    insert_rides(p, table, 100)

        producers = [threading.Thread(target=produce) for _ in range(3)]
        for t in producers:
            t.start()
        for t in producers:
            t.join()
        wait_until(lambda: conn.execute(f"SELECT count(*) FROM {name}_c_predictions").fetchone()[0] >= 3000, 90)
    finally:
        codes = [stop_worker(w) for w in workers]
    assert codes == [0, 0]
    assert conn.execute(f"SELECT count(*), count(DISTINCT event_id), count(DISTINCT delivery), max(delivery) "
                        f"FROM {name}_c_predictions").fetchone() == (3000, 3000, 3000, 3000)
    assert conn.execute("SELECT events_processed, events_pending FROM pgmodels.stream_consumers WHERE consumer = %s",
                        [name + "_c"]).fetchone() == (3000, 0)


@pytest.mark.parametrize("partitions", [0, 65, None])
def test_bad_partitions_are_refused_and_leave_nothing(conn, name, partitions):
    regression_project(conn, name + "_m")
    ride_stream(conn, name)
    err = sql_error(conn, "SELECT add_consumer(%s, %s, %s, partitions => %s)",
                    [name, name + "_c", name + "_m", partitions])
    assert err.sqlstate == "22023" and "partitions must be between 1 and 64" in err.diag.message_primary
    assert conn.execute("SELECT count(*) FROM pgmodels.stream_consumers WHERE consumer = %s",
                        [name + "_c"]).fetchone() == (0,)
    assert conn.execute("SELECT to_regclass(%s)", [name + "_c_predictions"]).fetchone() == (None,)


def test_open_transactions_never_leave_a_worker_waiting_for_long(conn, connect, name):
    """A call that found nothing, left open, holds the partitions it looked at (others get
    0 at once, as from a consumer another worker holds) and never the consumer; one that
    scored events and stays open makes another partition's commit wait at most 10 s, then
    fail with a clear error, its work undone."""
    regression_project(conn, name + "_m")
    table = _keyed_stream(conn, name)
    conn.execute("SELECT add_consumer(%s, %s, %s, partitions => 2)", [name, name + "_c", name + "_m"])
    idle = connect()
    idle.execute("BEGIN")
    assert idle.execute("SELECT process_stream(%s)", [name + "_c"]).fetchone()[0] == 0
    _insert(conn, table, 50)
    other = connect()
    started = time.monotonic()
    assert other.execute("SELECT process_stream(%s)", [name + "_c"]).fetchone()[0] == 0
    assert time.monotonic() - started < 5
    idle.execute("COMMIT")
    busy = connect()
    busy.execute("BEGIN")
    first = busy.execute("SELECT process_stream(%s)", [name + "_c"]).fetchone()[0]
    assert 0 < first < 50
    err = sql_error(other, "SELECT process_stream(%s)", [name + "_c"])
    assert err.sqlstate == "55P03" and "has not ended" in err.diag.message_primary and err.diag.message_hint
    busy.execute("COMMIT")
    assert drain(other, name + "_c") == 50 - first and pending(conn, name + "_c") == 0
    assert conn.execute(f"SELECT count(*), count(DISTINCT event_id), max(delivery) FROM {name}_c_predictions"
                        ).fetchone() == (50, 50, 50)


def test_zero_means_no_free_partition_has_events(conn, name):
    """Events of one key (one partition): the first call finds them whichever partition it
    takes first, so a loop until 0 leaves nothing pending."""
    regression_project(conn, name + "_m")
    table = _keyed_stream(conn, name)
    conn.execute("SELECT add_consumer(%s, %s, %s, partitions => 4)", [name, name + "_c", name + "_m"])
    for _ in range(3):
        conn.execute("SELECT process_stream(%s)", [name + "_c"])  # rotates which partition comes first
        conn.execute(f"INSERT INTO {table} (customer, a, b) SELECT 'hot', i, 1 FROM generate_series(1, 10) i")
        assert conn.execute("SELECT process_stream(%s)", [name + "_c"]).fetchone()[0] == 10
        assert conn.execute("SELECT process_stream(%s)", [name + "_c"]).fetchone()[0] == 0
        assert pending(conn, name + "_c") == 0


def test_positions_and_lag_are_the_owners_alone(conn, name, make_role):
    regression_project(conn, name + "_m")
    table = _keyed_stream(conn, name)
    cid = conn.execute("SELECT add_consumer(%s, %s, %s, partitions => 2)", [name, name + "_c", name + "_m"]
                       ).fetchone()[0]
    _insert(conn, table, 20)
    _, mallory = make_role(name + "_mallory")
    # the lag is answered to the roles that own the consumer or its stream only
    assert mallory.execute("SELECT * FROM pgmodels._consumer_lag(%s, pgmodels._credential())", [cid]).fetchone() == \
        (None, None)
    for statement in ("SELECT * FROM pgmodels.stream_consumer_part",
                      "UPDATE pgmodels.stream_consumer_part SET batch_after = 0"):
        assert sql_error(mallory, statement).sqlstate == "42501"
    assert sql_error(mallory, "SELECT pgmodels._consumer_advance(pgmodels._credential(), %s, 1, 1000000, true, 0, 0)",
                     [cid]).sqlstate == "55000"
    # the owner cannot move a partition it did not take in this transaction, nor count backwards
    err = sql_error(conn, "SELECT pgmodels._consumer_advance(pgmodels._credential(), %s, 0, 1000000, true, 0, 0)",
                    [cid])
    assert err.sqlstate == "55000" and "no batch in progress for this transaction" in err.diag.message_primary
    err = sql_error(conn, "SELECT pgmodels._consumer_advance(pgmodels._credential(), g.consumer_id, g.part, 1, true, "
                          "-50, 0) FROM pgmodels._consumer_get(pgmodels._credential(), %s, true) g", [name + "_c"])
    assert err.sqlstate == "22023"
    assert pending(conn, name + "_c") == 20 and drain(conn, name + "_c") == 20
