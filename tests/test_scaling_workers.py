"""Work spread over processes, as it would be over machines: stream workers reaching the
primary by different routes (directly, through a PgBouncer session pool) on the same
consumers while producers insert; and a batch job split into parallel runs over
partitions of its source. No event scored twice, no key written twice, none missed."""

from __future__ import annotations

import threading

import psycopg

from batchhelpers import make_project
from scalehelpers import Bouncer
from streamhelpers import insert_rides, regression_project, ride_stream, start_worker, stop_worker, wait_until


def test_workers_by_two_routes_on_two_consumers_score_every_event_once(cluster, conn, test_db, name):
    regression_project(conn, name + "_m1")
    regression_project(conn, name + "_m2")
    table = ride_stream(conn, name)
    consumers = [name + "_c1", name + "_c2"]
    for consumer, model in zip(consumers, ("_m1", "_m2")):
        conn.execute("SELECT add_consumer(%s, %s, %s)", [name, consumer, name + model])
    bouncer = Bouncer(cluster, pool_mode="session", pool_size=4)
    workers = [start_worker(test_db, *consumers), start_worker(test_db, *consumers),
               start_worker(bouncer.url(conn.info.dbname), *consumers)]
    try:
        def produce(k):
            with psycopg.connect(test_db, autocommit=True) as p:
                for i in range(10):
                    insert_rides(p, table, 100)

        producers = [threading.Thread(target=produce, args=(k,)) for k in range(3)]
        for t in producers:
            t.start()
        for t in producers:
            t.join()
        for consumer in consumers:
            wait_until(lambda: conn.execute(f"SELECT count(*) FROM {consumer}_predictions").fetchone()[0] >= 3000, 90)
    finally:
        codes = [stop_worker(w) for w in workers]
        bouncer.close()
    assert codes == [0, 0, 0]
    for consumer in consumers:
        assert conn.execute(f"SELECT count(*), count(DISTINCT event_id) FROM {consumer}_predictions").fetchone() == \
            (3000, 3000)
        assert conn.execute("SELECT events_processed, events_pending FROM pgmodels.stream_consumers "
                            "WHERE consumer = %s", [consumer]).fetchone() == (3000, 0)


def test_a_batch_job_split_into_parallel_runs_over_partitions(conn, test_db, name):
    """Two jobs over the two halves of a source (views on id % 2), run at once in two
    sessions, score what one job over the whole does: every key once, same predictions.
    (Each into its own output table: a full run removes the keys that left its source, so
    two jobs must not share one. Readers see them as one through a UNION ALL view.)"""
    src = make_project(conn, name, rows=4000, algorithm="linear")
    conn.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, chunk_rows => 500)", [name + "_all", name, src,
                                                                                        name + "_all_out"])
    for half in (0, 1):
        conn.execute(f"CREATE VIEW {src}_{half} AS SELECT * FROM {src} WHERE id % 2 = {half}")
        conn.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, chunk_rows => 500)",
                     [f"{name}_h{half}", name, f"{src}_{half}", f"{name}_h{half}_out"])
    errors = []

    def run(job):
        try:
            with psycopg.connect(test_db, autocommit=True) as c:
                c.execute("CALL run_batch_job(%s)", [job])
        except psycopg.Error as e:  # asserted on below
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(f"{name}_h{h}",)) for h in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    conn.execute("CALL run_batch_job(%s)", [name + "_all"])
    conn.execute(f"CREATE VIEW {name}_parts AS SELECT * FROM {name}_h0_out UNION ALL SELECT * FROM {name}_h1_out")
    assert conn.execute(f"SELECT count(*), count(DISTINCT id) FROM {name}_parts").fetchone() == (4000, 4000)
    differ = conn.execute(f"SELECT count(*) FROM {name}_parts p FULL JOIN {name}_all_out a USING (id) "
                          "WHERE p.prediction IS DISTINCT FROM a.prediction").fetchone()[0]
    assert differ == 0
    runs = conn.execute("SELECT job, status, rows_scored FROM pgmodels.batch_runs WHERE job LIKE %s ORDER BY job",
                        [name + "%"]).fetchall()
    assert runs == [(name + "_all", "succeeded", 4000), (name + "_h0", "succeeded", 2000),
                    (name + "_h1", "succeeded", 2000)]
    for job in (name + "_all", name + "_h0", name + "_h1"):
        conn.execute("SELECT drop_batch_job(%s)", [job])
