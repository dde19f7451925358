"""What one stream maintenance call costs on a busy stream, against the call of 0.2.0 in
the same run: the issue's shape, one owner's stream with --consumers consumers of
--partitions partitions each and --events events in its log.

- ``past``: every consumer is past every event of a full part of the log, but a
  transaction left open elsewhere holds every position's xmin back (as a running
  producer does), so the call must look further to know the part can go. The call
  truncates it.
- ``behind``: no consumer has processed anything; nothing can go. The call only finds
  that out.

Each with the consumers' lag samples due (as every 30 seconds) and not due. The
positions are set as process_stream leaves them (``done_snapshot`` = a snapshot that sees
every event's transaction), by the superuser, instead of scoring consumers x events
predictions. Each trial refills the log and times one call from the client:
``pgmodels._stream_maintain`` (what ``stream_maintenance()`` and the workers call) against
the same function as 0.2.0 shipped it (read from migrations/pgmodels--0.2.0.sql and made
here as ``public.bench_maint_020``), alternated. Medians and the spread (min, max) over
--repeat trials, and the 0.2.0 / now ratio; the log must be empty after ``past`` and
whole after ``behind`` (checked, and in the JSON).

    .pgmodels/venv/bin/python benchmarks/bench_stream_maintenance.py --dsn "$(.pgmodels/venv/bin/pgmodels db url)"
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

import psycopg

COMMAND = ".pgmodels/venv/bin/python benchmarks/bench_stream_maintenance.py --dsn \"$(.pgmodels/venv/bin/pgmodels db url)\""
P = "bench_maint"
ROOT = Path(__file__).resolve().parents[1]
SIDES = {"0.2.0": "public.bench_maint_020", "now": "pgmodels._stream_maintain"}


def install_baseline(conn) -> None:
    """0.2.0's _stream_maintain, from the frozen install script, as public.bench_maint_020."""
    text = (ROOT / "migrations" / "pgmodels--0.2.0.sql").read_text()
    start = text.index("CREATE OR REPLACE FUNCTION pgmodels._stream_maintain(")
    end = text.index("$$;", text.index("AS $$", start)) + 3
    conn.execute(text[start:end].replace("pgmodels._stream_maintain(", SIDES["0.2.0"] + "(", 1))


def setup(conn, consumers: int, partitions: int) -> int:
    """The stream and its consumers (remade when their number or partitions change)."""
    made = conn.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", [P + "_events"]).fetchone()[0]
    if made != f"consumers={consumers} partitions={partitions}":
        conn.execute("SELECT drop_stream(name, true) FROM pgmodels.streams WHERE name = %s", [P])
        for (table,) in conn.execute("SELECT relname FROM pg_class WHERE relname LIKE %s AND relkind = 'r'",
                                     [P + r"\_%"]).fetchall():
            conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
        conn.execute(f"""CREATE TABLE {P}_train AS SELECT (i % 13)::float8 AS a, ((i * 5) % 17)::float8 AS b,
                                (3 * (i % 13) - 2 * ((i * 5) % 17) + 1)::float8 AS y FROM generate_series(1, 200) i""")
        conn.execute("SELECT * FROM train(%s, 'regression', %s, 'y')", [P + "_m", P + "_train"]).fetchall()
        conn.execute(f"CREATE TABLE {P}_events (id bigserial PRIMARY KEY, a float8, b float8)")
        conn.execute("SELECT create_stream(%s, %s, 'id')", [P, P + "_events"])
        for i in range(consumers):
            conn.execute("SELECT add_consumer(%s, %s, %s, partitions => %s)", [P, f"{P}_c{i}", P + "_m", partitions])
        conn.execute(f"COMMENT ON TABLE {P}_events IS 'consumers={consumers} partitions={partitions}'")
    return conn.execute("SELECT stream_id FROM pgmodels.streams WHERE name = %s", [P]).fetchone()[0]


def log_rows(conn, sid: int) -> int:
    return conn.execute(f"SELECT count(*) FROM pgmodels.stream_{sid}_log").fetchone()[0]


def fill(conn, sid: int, events: int, batch: int) -> None:
    """An empty log, then --events events in statements of --batch rows, in a part of the
    log that no longer takes inserts."""
    conn.execute("UPDATE pgmodels.stream_consumer_part p SET done_snapshot = pg_current_snapshot(), "
                 "batch_snapshot = NULL, batch_after = 0 FROM pgmodels.stream_consumer c "
                 "WHERE c.id = p.consumer_id AND c.stream_id = %s", [sid])
    for child in range(3):
        conn.execute(f"TRUNCATE pgmodels.stream_{sid}_log_{child}")
    for start in range(0, events, batch):
        n = min(batch, events - start)
        conn.execute(f"INSERT INTO {P}_events (a, b) SELECT i % 13, (i * 5) % 17 FROM generate_series(1, {n}) i")
    # the next insert goes to the next part: these events now wait for the consumers only
    current = conn.execute("SELECT current_child FROM pgmodels.stream WHERE id = %s", [sid]).fetchone()[0]
    conn.execute("UPDATE pgmodels.stream SET current_child = (current_child + 1) %% 3 WHERE id = %s", [sid])
    assert conn.execute(f"SELECT count(*) FROM pgmodels.stream_{sid}_log_{current}").fetchone()[0] == events


def trial(conn, dsn: str, sid: int, side: str, scenario: str, samples_due: bool, events: int, batch: int) -> dict:
    with psycopg.connect(dsn) as held:  # a transaction open elsewhere: every position's xmin stays behind it
        held.execute("SELECT pg_current_xact_id()")
        fill(conn, sid, events, batch)
        if scenario == "past":  # every consumer has processed every event (as process_stream leaves it)
            conn.execute("UPDATE pgmodels.stream_consumer_part p SET done_snapshot = pg_current_snapshot() "
                         "FROM pgmodels.stream_consumer c WHERE c.id = p.consumer_id AND c.stream_id = %s", [sid])
        conn.execute("DELETE FROM pgmodels.stream_consumer_sample x USING pgmodels.stream_consumer c "
                     "WHERE c.id = x.consumer_id AND c.stream_id = %s", [sid])  # samples due, as after 30 s
        if not samples_due:  # each consumer sampled a moment ago
            conn.execute("INSERT INTO pgmodels.stream_consumer_sample (consumer_id, at, events_processed) "
                         "SELECT c.id, now(), 0 FROM pgmodels.stream_consumer c WHERE c.stream_id = %s", [sid])
        conn.execute("VACUUM ANALYZE pgmodels.stream_consumer_part")
        started = time.perf_counter()
        done = conn.execute(f"SELECT {SIDES[side]}(pgmodels._credential(), %s)", [sid]).fetchone()[0]
        seconds = time.perf_counter() - started
        held.rollback()
    left = log_rows(conn, sid)
    correct = left == 0 if scenario == "past" else left == events
    return {"side": side, "scenario": scenario, "samples_due": samples_due, "seconds": seconds, "done": done,
            "events_left": left, "correct": correct}


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", required=True)
    p.add_argument("--consumers", type=int, default=21)
    p.add_argument("--partitions", type=int, default=64)
    p.add_argument("--events", type=int, default=100000)
    p.add_argument("--batch", type=int, default=1000, help="events per producing statement (transaction)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out")
    args = p.parse_args(argv)

    with psycopg.connect(args.dsn, autocommit=True) as conn:
        sid = setup(conn, args.consumers, args.partitions)
        install_baseline(conn)
        load = os.getloadavg()[0]
        trials = []
        for i in range(args.repeat):
            for scenario in ("past", "behind"):
                for samples_due in (True, False):
                    for side in (("0.2.0", "now") if i % 2 == 0 else ("now", "0.2.0")):
                        t = trial(conn, args.dsn, sid, side, scenario, samples_due, args.events, args.batch)
                        trials.append(t)
                        print(f"{side:>5} {scenario:>6} samples {'due' if samples_due else 'not due':>7}: "
                              f"{t['seconds']:8.3f} s  left={t['events_left']}  done={t['done']!r}", flush=True)
        conn.execute(f"DROP FUNCTION {SIDES['0.2.0']}(text, bigint)")
    cases = {}
    for scenario in ("past", "behind"):
        for samples_due in (True, False):
            key = f"{scenario}, samples {'due' if samples_due else 'not due'}"
            by_side = {side: summary([t["seconds"] for t in trials if t["side"] == side
                                      and t["scenario"] == scenario and t["samples_due"] == samples_due])
                       for side in SIDES}
            cases[key] = {**by_side, "ratio": by_side["0.2.0"]["median"] / by_side["now"]["median"]}
    results = {"meta": {"command": COMMAND, "dsn": psycopg.conninfo.conninfo_to_dict(args.dsn).get("dbname"),
                        "consumers": args.consumers, "partitions": args.partitions, "events": args.events,
                        "batch": args.batch, "repeat": args.repeat, "load_average_start": load,
                        "load_average_end": os.getloadavg()[0],
                        "at": datetime.datetime.now().isoformat(timespec="minutes")},
               "trials": trials, "cases": cases, "correct": all(t["correct"] for t in trials)}
    for key, v in cases.items():
        print(f"{key}: 0.2.0 {v['0.2.0']['median']:.3f} s [{v['0.2.0']['min']:.3f}-{v['0.2.0']['max']:.3f}], "
              f"now {v['now']['median']:.3f} s [{v['now']['min']:.3f}-{v['now']['max']:.3f}], "
              f"ratio {v['ratio']:.1f}x")
    print("every trial left the log as it should:", results["correct"])
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return 0 if results["correct"] else 1


if __name__ == "__main__":
    sys.exit(main())
