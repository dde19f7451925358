"""Scaling across processes on one machine: stream workers and a batch job split in two,
1 process against 2, in the same run.

- ``stream``: one stream with two consumers (two regression models); ``pgmodels stream
  work`` processes wait for events, then --events events are inserted in one statement:
  1 worker (both consumers) against 2 workers (both started on both consumers: a consumer
  is taken by one worker at a time, so they share the two). Events scored per second,
  from the insert to the last prediction. Every event must be scored once per consumer.
- ``split``: one consumer of the same stream whose events are split into two partitions
  (``add_consumer(..., partitions => 2)``): 1 worker against 2 on that one consumer; and,
  as the user's baseline, 1 worker on the same consumer unpartitioned.
- ``batch``: --rows keyed rows; one job over the whole table against the same rows split
  into two jobs over two halves (views on ``id % 2``), run at once in two sessions
  (``CALL run_batch_job``). Rows scored per second, wall time of the slowest run.

The sides alternate (which goes first rotates with each repetition); medians with the
spread (min, max) over the repetitions, and the 2-process / 1-process ratio. This machine
has 2 shared cores: the ideal is 2.0.

    .pgmodels/venv/bin/python benchmarks/bench_workers.py --dsn "$(.pgmodels/venv/bin/pgmodels db url)"
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

PGMODELS = str(Path(sys.executable).with_name("pgmodels"))
COMMAND = ".pgmodels/venv/bin/python benchmarks/bench_workers.py --dsn \"$(.pgmodels/venv/bin/pgmodels db url)\""
P = "bench_workers"


def setup(conn, rows: int, trees: int) -> None:
    """Two regression models, a keyed source of --rows rows with two half views, a stream
    (kept between runs; remade when --rows or --trees change)."""
    made = conn.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", [P + "_src"]).fetchone()[0]
    if made != f"rows={rows} trees={trees}":
        conn.execute("SELECT drop_stream(name, true) FROM pgmodels.streams WHERE name = %s", [P])
        for t in ("_rides", "_src", "_train"):
            conn.execute(f"DROP TABLE IF EXISTS {P}{t} CASCADE")
        conn.execute(f"""CREATE TABLE {P}_train AS SELECT (i % 13)::float8 AS a, ((i * 5) % 17)::float8 AS b,
                                (3 * (i % 13) - 2 * ((i * 5) % 17) + 1)::float8 AS y FROM generate_series(1, 5000) i""")
        for m in ("m1", "m2"):
            conn.execute("SELECT * FROM train(%s, 'regression', %s, 'y', 'xgboost', %s)",
                         [f"{P}_{m}", P + "_train", json.dumps({"n_estimators": trees})]).fetchall()
        conn.execute(f"CREATE TABLE {P}_src AS SELECT i AS id, (i % 13)::float8 AS a, ((i * 5) % 17)::float8 AS b "
                     f"FROM generate_series(1, {rows}) i")
        conn.execute(f"ALTER TABLE {P}_src ADD PRIMARY KEY (id)")
        conn.execute(f"COMMENT ON TABLE {P}_src IS 'rows={rows} trees={trees}'")
        for half in (0, 1):
            conn.execute(f"CREATE VIEW {P}_src_{half} AS SELECT * FROM {P}_src WHERE id % 2 = {half}")
        conn.execute(f"CREATE TABLE {P}_rides (ride_id bigserial PRIMARY KEY, a float8, b float8)")
        conn.execute("SELECT create_stream(%s, %s, 'ride_id')", [P, P + "_rides"])


def _consumers(conn, split: int) -> list[str]:
    """Two consumers (one partition each), or (split > 0) one consumer of split partitions."""
    wanted = [(f"{P}_split", "m1", split)] if split else [(f"{P}_c1", "m1", 1), (f"{P}_c2", "m2", 1)]
    for name in (f"{P}_c1", f"{P}_c2", f"{P}_split"):
        conn.execute("SELECT drop_consumer(%s, true) FROM pgmodels.stream_consumers WHERE consumer = %s", [name, name])
        conn.execute(f"DROP TABLE IF EXISTS {name}_predictions")  # left by a stream dropped with its consumers
    for name, model, partitions in wanted:
        conn.execute("SELECT add_consumer(%s, %s, %s, partitions => %s)", [P, name, f"{P}_{model}", partitions])
    return [w[0] for w in wanted]


def stream_trial(conn, dsn: str, workers: int, events: int, max_events: int, split: int = 0) -> dict:
    names = _consumers(conn, split)
    procs = [subprocess.Popen([PGMODELS, "stream", "work", *names, "--dsn", dsn, "--max-events", str(max_events)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(workers)]
    try:
        # the workers started and waiting (LISTEN): their start-up is not what is measured
        deadline = time.monotonic() + 60
        # (a waiting worker's backend is registered in pgmodels.stream_waiter while it waits)
        while conn.execute("SELECT count(*) FROM pgmodels.stream_waiter w JOIN pgmodels.stream s ON s.id = w.stream_id "
                           "JOIN pg_stat_activity a ON a.pid = w.pid "
                           "WHERE s.name = %s AND a.application_name = 'pgmodels stream worker'",
                           [P]).fetchone()[0] < workers:
            if time.monotonic() > deadline:
                raise SystemExit("the stream workers did not start waiting within 60 s")
            time.sleep(0.05)
        start = time.perf_counter()
        conn.execute(f"INSERT INTO {P}_rides (a, b) SELECT i %% 13, (i * 5) %% 17 FROM generate_series(1, %s) i",
                     [events])
        while True:
            done = [conn.execute(f"SELECT count(*), count(DISTINCT event_id) FROM {n}_predictions").fetchone()
                    for n in names]
            if all(d[0] >= events for d in done):
                break
            time.sleep(0.02)
        wall = time.perf_counter() - start
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
    exact = all(d == (events, events) for d in done)
    return {"wall_s": wall, "events_per_s": len(names) * events / wall, "each_event_once_per_consumer": exact}


def batch_trial(dsn: str, conn, parts: int, chunk: int) -> dict:
    jobs = [f"{P}_all"] if parts == 1 else [f"{P}_half{h}" for h in (0, 1)]
    sources = [f"{P}_src"] if parts == 1 else [f"{P}_src_{h}" for h in (0, 1)]
    for job, src in zip(jobs, sources):
        conn.execute("SELECT drop_batch_job(job, true) FROM pgmodels.batch_jobs WHERE job = %s", [job])
        conn.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, chunk_rows => %s)",
                     [job, P + "_m1", src, job + "_out", chunk])
    walls: list[float] = [0.0] * len(jobs)

    def run(i):
        with psycopg.connect(dsn, autocommit=True) as c:
            t = time.perf_counter()
            c.execute("CALL run_batch_job(%s)", [jobs[i]])
            walls[i] = time.perf_counter() - t

    start = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    scored = sum(conn.execute(f"SELECT count(*) FROM {j}_out").fetchone()[0] for j in jobs)
    keys = conn.execute(" UNION ALL ".join(f"SELECT id FROM {j}_out" for j in jobs).join(
        ["SELECT count(DISTINCT id) FROM (", ") k"])).fetchone()[0]
    return {"wall_s": wall, "rows_per_s": scored / wall, "rows": scored, "distinct_keys": keys}


def summary(trials: list[dict], key: str) -> dict:
    values = [t[key] for t in trials]
    return {"trials": trials, "median": statistics.median(values), "min": min(values), "max": max(values)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", required=True)
    p.add_argument("--events", type=int, default=50000, help="events per stream trial")
    p.add_argument("--rows", type=int, default=200000, help="rows of the batch source")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--trees", type=int, default=50)
    p.add_argument("--max-events", type=int, default=1000)
    p.add_argument("--chunk", type=int, default=10000)
    p.add_argument("--out")
    args = p.parse_args(argv)
    # killed (timeout, SIGTERM): unwind, so that the trial's finally stops its workers
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute("SET pgmodels.progress_level = 'off'")
        setup(conn, args.rows, args.trees)
        load = os.getloadavg()
        stream: dict = {1: [], 2: []}
        split: dict = {0: [], 1: [], 2: []}  # 0: one worker, one partition
        batch: dict = {1: [], 2: []}
        for i in range(args.repeat):
            order = (1, 2) if i % 2 == 0 else (2, 1)
            for n in order:
                stream[n].append(stream_trial(conn, args.dsn, n, args.events, args.max_events))
            for n in (0, *order):
                split[n].append(stream_trial(conn, args.dsn, max(n, 1), args.events, args.max_events,
                                             split=1 if n == 0 else 2))
            for n in order:
                batch[n].append(batch_trial(args.dsn, conn, n, args.chunk))
    s1, s2 = summary(stream[1], "events_per_s"), summary(stream[2], "events_per_s")
    p0, p1, p2 = (summary(split[n], "events_per_s") for n in (0, 1, 2))
    b1, b2 = summary(batch[1], "rows_per_s"), summary(batch[2], "rows_per_s")
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": f"{COMMAND} --events {args.events} --rows {args.rows} --repeat {args.repeat} --trees {args.trees} "
                   f"--max-events {args.max_events} --chunk {args.chunk}",
        "cpus": os.cpu_count(), "load_average_at_start": load,
        "stream": {"1_worker": s1, "2_workers": s2, "ratio": s2["median"] / s1["median"],
                   "each_event_once": all(t["each_event_once_per_consumer"] for t in stream[1] + stream[2])},
        "split": {"unpartitioned_1_worker": p0, "1_worker": p1, "2_workers": p2, "ratio": p2["median"] / p1["median"],
                  "ratio_to_unpartitioned": p2["median"] / p0["median"],
                  "each_event_once": all(t["each_event_once_per_consumer"] for t in split[0] + split[1] + split[2])},
        "batch": {"1_run": b1, "2_runs": b2, "ratio": b2["median"] / b1["median"],
                  "every_key_once": all(t["rows"] == t["distinct_keys"] == args.rows for t in batch[1] + batch[2])},
    }
    print(f"stream: 1 worker {s1['median']:,.0f} events/s [{s1['min']:,.0f}-{s1['max']:,.0f}], "
          f"2 workers {s2['median']:,.0f} [{s2['min']:,.0f}-{s2['max']:,.0f}], ratio {results['stream']['ratio']:.2f}, "
          f"each event once: {results['stream']['each_event_once']}")
    print(f"one consumer, 2 partitions: 1 worker {p1['median']:,.0f} events/s [{p1['min']:,.0f}-{p1['max']:,.0f}], "
          f"2 workers {p2['median']:,.0f} [{p2['min']:,.0f}-{p2['max']:,.0f}], ratio {results['split']['ratio']:.2f}; "
          f"unpartitioned, 1 worker {p0['median']:,.0f} [{p0['min']:,.0f}-{p0['max']:,.0f}], 2 workers on 2 partitions / "
          f"that {results['split']['ratio_to_unpartitioned']:.2f}; each event once: {results['split']['each_event_once']}")
    print(f"batch: 1 run {b1['median']:,.0f} rows/s [{b1['min']:,.0f}-{b1['max']:,.0f}], "
          f"2 runs {b2['median']:,.0f} [{b2['min']:,.0f}-{b2['max']:,.0f}], ratio {results['batch']['ratio']:.2f}, "
          f"every key once: {results['batch']['every_key_once']}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
