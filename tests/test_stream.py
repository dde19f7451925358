"""Streams: events become predictions exactly once, whatever the order of commits, the
number of workers, or how often they die. The seeds' three flows are tests here."""

from __future__ import annotations

import json
import random
import signal
import threading
import time

import psycopg
from psycopg import sql

from streamhelpers import (drain, insert_rides, pending, regression_project, ride_stream, start_worker, stop_worker,
                           wait_until)


def test_two_consumers_on_one_ride_stream(conn, name):
    """Flow 1: duration and cost, two models on one stream; the log holds each event once."""
    regression_project(conn, name + "_dur")
    regression_project(conn, name + "_cost")
    table = ride_stream(conn, name)
    conn.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_d", name + "_dur"])
    conn.execute("SELECT add_consumer(%s, %s, %s, %s)", [name, name + "_c", name + "_cost", name + "_costs"])
    insert_rides(conn, table, 1500)
    sid = conn.execute("SELECT stream_id FROM pgmodels.streams WHERE name = %s", [name]).fetchone()[0]
    assert conn.execute(f"SELECT count(*) FROM pgmodels.stream_{sid}_log").fetchone() == (1500,)
    assert pending(conn, name + "_d") == 1500
    assert drain(conn, name + "_d") == 1500 and drain(conn, name + "_c") == 1500
    for out in (name + "_d_predictions", name + "_costs"):
        bad = conn.execute(f"""SELECT count(*), count(DISTINCT o.event_id),
                                      count(*) FILTER (WHERE abs(o.prediction - (3 * r.a - 2 * r.b + 1)) > 0.01)
                                 FROM {out} o JOIN {table} r ON r.ride_id = o.key""").fetchone()
        assert bad == (1500, 1500, 0)
    row = conn.execute("SELECT events_processed, events_pending, failures FROM pgmodels.stream_consumers "
                       "WHERE consumer = %s", [name + "_c"]).fetchone()
    assert row == (1500, 0, 0)


def test_a_fast_answer_now_and_the_streams_answer_later(conn, name):
    """Flow 2: predict() answers at request time; latest_prediction() is NULL until the
    stream has scored the event."""
    regression_project(conn, name + "_fast")
    regression_project(conn, name + "_slow")
    table = ride_stream(conn, name)
    conn.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_acc", name + "_slow"])
    fast = conn.execute("SELECT predict(%s, ARRAY[4, 2])", [name + "_fast"]).fetchone()[0]
    ride = conn.execute(f"INSERT INTO {table} (a, b) VALUES (4, 2) RETURNING ride_id").fetchone()[0]
    assert conn.execute("SELECT latest_prediction(%s, %s)", [name + "_acc", str(ride)]).fetchone() == (None,)
    drain(conn, name + "_acc")
    later = conn.execute("SELECT latest_prediction(%s, %s)", [name + "_acc", str(ride)]).fetchone()[0]
    assert abs(fast - 9) < 0.01 and abs(later - 9) < 0.01


def test_a_decision_service_consumes_a_prediction_stream(conn, name):
    """Flow 3: one consumer's output table is the table of another stream."""
    regression_project(conn, name + "_dur")
    conn.execute(f"CREATE TABLE {name}_dtrain AS SELECT i::real AS prediction, (i > 10)::int AS late "
                 "FROM generate_series(0, 30) i")
    conn.execute("SELECT * FROM train(%s, 'classification', %s, 'late')", [name + "_decide", name + "_dtrain"])
    table = ride_stream(conn, name)
    conn.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_d", name + "_dur"])
    conn.execute("SELECT create_stream(%s, %s, 'event_id')", [name + "_pred", name + "_d_predictions"])
    conn.execute("SELECT add_consumer(%s, %s, %s)", [name + "_pred", name + "_late", name + "_decide"])
    insert_rides(conn, table, 40)
    assert drain(conn, name + "_d") == 40
    assert drain(conn, name + "_late") == 40
    rows = conn.execute(f"""SELECT d.prediction, l.label FROM {name}_late_predictions l
                              JOIN {name}_d_predictions d ON d.event_id = l.key""").fetchall()
    assert len(rows) == 40 and {label for p, label in rows if p > 15} == {"1"}


def test_events_of_transactions_that_commit_late_are_not_lost(conn, connect, name):
    regression_project(conn, name + "_m")
    table = ride_stream(conn, name)
    conn.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_c", name + "_m"])
    early = connect(autocommit=False)
    insert_rides(early, table, 10)  # lower event ids, still open
    insert_rides(conn, table, 20, start=10)
    assert drain(conn, name + "_c") == 20
    early.commit()
    assert drain(conn, name + "_c") == 10
    insert_rides(conn, table, 5, start=30)
    aborted = connect(autocommit=False)
    insert_rides(aborted, table, 7, start=100)
    aborted.rollback()
    assert drain(conn, name + "_c", max_events=2) == 5
    assert conn.execute(f"SELECT count(*), count(DISTINCT event_id) FROM {name}_c_predictions").fetchone() == (35, 35)


def test_dead_letters_do_not_block_the_stream(conn, name):
    regression_project(conn, name + "_m")
    table = ride_stream(conn, name)
    conn.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_c", name + "_m"])
    conn.execute(f"INSERT INTO {table} (a, b) VALUES (1, 2), ('NaN', 1), (NULL, 3), (1e300, 1), (2, 2)")
    assert drain(conn, name + "_c") == 5
    letters = conn.execute("SELECT event_key::int, error_sqlstate, error, event->>'b' FROM pgmodels.stream_dead_letters "
                           "WHERE consumer = %s ORDER BY 1", [name + "_c"]).fetchall()
    assert [(k, s) for k, s, _, _ in letters] == [(2, "22023"), (3, "22004"), (4, "22003")]
    assert 'feature "a" is NaN' in letters[0][2] and letters[1][3] == "3"
    assert conn.execute(f"SELECT array_agg(key::int ORDER BY key) FROM {name}_c_predictions").fetchone() == ([1, 5],)
    assert conn.execute("SELECT failures FROM pgmodels.stream_consumers WHERE consumer = %s",
                        [name + "_c"]).fetchone() == (3,)


def test_enrichment_looks_missing_features_up_by_key(conn, name):
    regression_project(conn, name + "_m")
    conn.execute(f"CREATE TABLE {name}_events (customer integer, a float8)")
    conn.execute(f"CREATE TABLE {name}_features (customer integer PRIMARY KEY, a float8, b float8)")
    conn.execute(f"INSERT INTO {name}_features SELECT i, 100, i FROM generate_series(1, 5) i")
    conn.execute("SELECT create_stream(%s, %s, 'customer')", [name, name + "_events"])
    conn.execute("SELECT add_consumer(%s, %s, %s, enrich_relation => %s, enrich_key => 'customer')",
                 [name, name + "_c", name + "_m", name + "_features"])
    conn.execute(f"INSERT INTO {name}_events VALUES (1, 2), (2, NULL), (9, 1)")  # 9: no stored features
    drain(conn, name + "_c")
    got = dict(conn.execute(f"SELECT key::int, round(prediction) FROM {name}_c_predictions").fetchall())
    assert got == {1: 3 * 2 - 2 * 1 + 1, 2: 3 * 100 - 2 * 2 + 1}  # the event's a wins over the stored one
    assert conn.execute("SELECT event_key FROM pgmodels.stream_dead_letters WHERE consumer = %s",
                        [name + "_c"]).fetchall() == [("9",)]


def test_subscribers_listen_and_read_with_a_durable_cursor(conn, connect, name):
    regression_project(conn, name + "_m")
    table = ride_stream(conn, name)
    conn.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_c", name + "_m"])
    channel = conn.execute("SELECT channel FROM pgmodels.stream_consumers WHERE consumer = %s",
                           [name + "_c"]).fetchone()[0]
    listener = connect()
    listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
    insert_rides(conn, table, 25)
    conn.execute("SELECT process_stream(%s, 10)", [name + "_c"])
    note = next(listener.notifies(timeout=5, stop_after=1))
    payload = json.loads(note.payload)
    assert payload["consumer"] == name + "_c" and payload["predictions"] == 10 and len(note.payload) < 8000
    drain(conn, name + "_c")
    seen, after = [], 0
    while True:  # an offline subscriber catches up, ten at a time
        page = conn.execute("SELECT event_id FROM read_predictions(%s, %s, 10)", [name + "_c", after]).fetchall()
        if not page:
            break
        seen += [r[0] for r in page]
        after = page[-1][0]
    assert sorted(seen) == list(range(seen[0], seen[0] + 25)) and len(set(seen)) == 25


def test_maintenance_rotates_the_log_and_truncates_what_every_consumer_passed(conn, name):
    regression_project(conn, name + "_m")
    table = ride_stream(conn, name)
    conn.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_a", name + "_m"])
    conn.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_b", name + "_m"])
    sid = conn.execute("SELECT stream_id FROM pgmodels.streams WHERE name = %s", [name]).fetchone()[0]
    conn.execute("UPDATE pgmodels.stream SET rotate_rows = 100 WHERE id = %s", [sid])
    log = f"pgmodels.stream_{sid}_log"
    for round_ in range(4):
        insert_rides(conn, table, 150, start=150 * round_)
        drain(conn, name + "_a")
        if round_ < 3:
            drain(conn, name + "_b")
        conn.execute("SELECT * FROM stream_maintenance(%s)", [name])
    # consumer b is behind by one round: those events stay, the rest went by TRUNCATE
    assert conn.execute(f"SELECT count(*) FROM {log}").fetchone()[0] == 150
    assert conn.execute(f"SELECT count(*) FROM {name}_a_predictions").fetchone() == (600,)
    drain(conn, name + "_b")
    conn.execute("SELECT * FROM stream_maintenance(%s)", [name])
    conn.execute("SELECT * FROM stream_maintenance(%s)", [name])
    assert conn.execute(f"SELECT count(*) FROM {log}").fetchone() == (0,)
    assert conn.execute(f"SELECT count(*) FROM {name}_b_predictions").fetchone() == (600,)


def test_workers_with_notifications_and_two_on_one_consumer(conn, test_db, name):
    regression_project(conn, name + "_m")
    table = ride_stream(conn, name)
    conn.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_c", name + "_m"])
    workers = [start_worker(test_db, name + "_c") for _ in range(2)]
    try:
        insert_rides(conn, table, 1)
        wait_until(lambda: conn.execute(f"SELECT count(*) FROM {name}_c_predictions").fetchone()[0] == 1, 20)
        started = time.time()
        insert_rides(conn, table, 1, start=1)  # a waiting worker is woken, not polled
        wait_until(lambda: conn.execute(f"SELECT count(*) FROM {name}_c_predictions").fetchone()[0] == 2, 20, 0.01)
        woken_in = time.time() - started
        for i in range(20):
            insert_rides(conn, table, 100, start=2 + 100 * i)
        wait_until(lambda: pending(conn, name + "_c") == 0 and conn.execute(
            f"SELECT count(*) FROM {name}_c_predictions").fetchone()[0] == 2002, 60)
        assert woken_in < 0.45, woken_in  # under the 0.5 s safety net
    finally:
        codes = [stop_worker(w) for w in workers]
    assert codes == [0, 0]
    assert conn.execute(f"SELECT count(*), count(DISTINCT event_id) FROM {name}_c_predictions").fetchone() == \
        (2002, 2002)


def test_chaos_twenty_sigkills_lose_and_duplicate_nothing(conn, test_db, name):
    regression_project(conn, name + "_dur")
    regression_project(conn, name + "_cost")
    table = ride_stream(conn, name)
    conn.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_d", name + "_dur"])
    conn.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_c", name + "_cost"])
    total, stop = 50_000, threading.Event()

    def produce():
        with psycopg.connect(test_db, autocommit=True) as p:
            for i in range(0, total, 100):
                insert_rides(p, table, 100, start=i)
        stop.set()

    producer = threading.Thread(target=produce)
    producer.start()
    workers = [start_worker(test_db, extra=("--max-events", "500")) for _ in range(3)]
    kills, rng = 0, random.Random(7)
    try:
        while kills < 20:
            time.sleep(rng.uniform(0.15, 0.45))  # some mid-batch, some while starting
            i = rng.randrange(len(workers))
            workers[i].send_signal(signal.SIGKILL)
            workers[i].wait(10)
            kills += 1
            workers[i] = start_worker(test_db, extra=("--max-events", "500"))
        producer.join(120)
        assert stop.is_set()
        for consumer in (name + "_d", name + "_c"):
            wait_until(lambda c=consumer: pending(conn, c) == 0, 120, 0.5)
    finally:
        for w in workers:
            stop_worker(w)
    for out in (name + "_d_predictions", name + "_c_predictions"):
        assert conn.execute(f"SELECT count(*), count(DISTINCT event_id) FROM {out}").fetchone() == (total, total)
    assert conn.execute(f"SELECT count(*) FROM {table} r WHERE NOT EXISTS "
                        f"(SELECT 1 FROM {name}_d_predictions o WHERE o.key = r.ride_id)").fetchone() == (0,)


def test_a_worker_reconnects_after_losing_its_connection(conn, test_db, name):
    regression_project(conn, name + "_m")
    table = ride_stream(conn, name)
    conn.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_c", name + "_m"])
    worker = start_worker(test_db, name + "_c")
    try:
        insert_rides(conn, table, 10)
        wait_until(lambda: pending(conn, name + "_c") == 0, 20)
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE application_name = 'pgmodels stream worker' AND datname = current_database()")
        insert_rides(conn, table, 10, start=10)
        wait_until(lambda: conn.execute(f"SELECT count(*) FROM {name}_c_predictions").fetchone()[0] == 20, 30)
    finally:
        assert stop_worker(worker) == 0
    assert "connection lost" in worker.stderr.read()


def test_a_server_restart_loses_and_duplicates_nothing(throwaway_cluster):
    c = throwaway_cluster
    with psycopg.connect(c.url(), autocommit=True) as conn:
        regression_project(conn, "r_m")
        table = ride_stream(conn, "r")
        conn.execute("SELECT add_consumer('r', 'r_c', 'r_m')")
    worker = start_worker(c.url(), "r_c")
    try:
        with psycopg.connect(c.url(), autocommit=True) as conn:
            insert_rides(conn, table, 500)
        c.stop()  # mid-stream: the worker loses its connection
        c.start()
        with psycopg.connect(c.url(), autocommit=True) as conn:
            insert_rides(conn, table, 500, start=500)
            wait_until(lambda: pending(conn, "r_c") == 0 and conn.execute(
                "SELECT count(*) FROM r_c_predictions").fetchone()[0] == 1000, 60, 0.2)
            assert conn.execute("SELECT count(*), count(DISTINCT event_id) FROM r_c_predictions").fetchone() == \
                (1000, 1000)
    finally:
        assert stop_worker(worker) == 0


def test_a_commit_that_could_not_notify_is_still_seen_at_once(conn, connect, test_db, name):
    """A producer inserted before the worker started waiting, and commits after: its
    commit sends no NOTIFY, and the worker, seeing the open transaction, looks again soon
    instead of sleeping its whole idle timeout."""
    regression_project(conn, name + "_m")
    table = ride_stream(conn, name)
    conn.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_c", name + "_m"])
    producer = connect(autocommit=False)
    insert_rides(producer, table, 3)
    worker = start_worker(test_db, name + "_c", extra=("--idle-timeout", "30"))
    try:
        wait_until(lambda: conn.execute("SELECT count(*) > 0 FROM pgmodels.stream_waiter w "
                                        "JOIN pgmodels.stream s ON s.id = w.stream_id WHERE s.name = %s",
                                        [name]).fetchone()[0], 20, 0.05)
        producer.commit()
        started = time.time()
        wait_until(lambda: conn.execute(f"SELECT count(*) FROM {name}_c_predictions").fetchone()[0] == 3, 10, 0.02)
        assert time.time() - started < 3
    finally:
        assert stop_worker(worker, timeout=5) == 0  # SIGTERM ends its wait at once


def test_enrichment_with_duplicate_or_foreign_keys_scores_each_event_once(conn, name):
    regression_project(conn, name + "_m")
    conn.execute(f"CREATE TABLE {name}_events (customer text, a float8)")
    conn.execute(f"CREATE TABLE {name}_features (customer integer, b float8)")  # no unique key, another type
    conn.execute(f"INSERT INTO {name}_features VALUES (1, 1), (1, 1), (2, 5)")
    conn.execute("SELECT create_stream(%s, %s, 'customer')", [name, name + "_events"])
    conn.execute("SELECT add_consumer(%s, %s, %s, enrich_relation => %s, enrich_key => 'customer')",
                 [name, name + "_c", name + "_m", name + "_features"])
    conn.execute(f"INSERT INTO {name}_events VALUES ('1', 2), ('abc', 1), ('2', 1)")
    assert drain(conn, name + "_c") == 3
    got = dict(conn.execute(f"SELECT key, round(prediction) FROM {name}_c_predictions").fetchall())
    assert got == {"1": 3 * 2 - 2 * 1 + 1, "2": 3 * 1 - 2 * 5 + 1}
    assert conn.execute("SELECT event_key FROM pgmodels.stream_dead_letters WHERE consumer = %s",
                        [name + "_c"]).fetchall() == [("abc",)]


def test_a_worker_goes_on_with_its_other_consumers_when_one_fails(conn, test_db, name):
    regression_project(conn, name + "_m")
    table = ride_stream(conn, name)
    conn.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_bad", name + "_m"])
    conn.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_good", name + "_m"])
    conn.execute(f"ALTER TABLE {name}_bad_predictions RENAME TO {name}_gone")  # every call of _bad fails
    worker = start_worker(test_db, name + "_bad", name + "_good")
    try:
        insert_rides(conn, table, 20)
        wait_until(lambda: conn.execute(f"SELECT count(*) FROM {name}_good_predictions").fetchone()[0] == 20, 30)
    finally:
        assert stop_worker(worker) == 0
    assert f"{name}_bad" in worker.stderr.read()
