"""How an application calls pgmodels through psycopg 3: one row per round trip, or a whole
batch in one round trip, measured in the same run.

- ``per_row``: ``SELECT predict(%s, %s::real[])`` with parameters, once per row (psycopg
  prepares the statement after its fifth execution, as it does for any repeated query);
- ``predict_batch``: ``SELECT predict_batch(%s, %s::real[])`` with the rows as one 2-D array;
- ``unnest``: ``SELECT u.k, predict(%s, ARRAY[u.a, u.b, u.c, u.d]) FROM unnest(...) u``,
  one statement whose rows carry their keys.

The three alternate within each trial (rotating which goes first), so drift on a shared
machine hits them alike; each is reported as its median with the spread (min and max)
over the trials, and the ratios per_row / batch. All three must give the same predictions.

    .pgmodels/venv/bin/python benchmarks/bench_psycopg.py --dsn "$(.pgmodels/venv/bin/pgmodels db url)"
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import psycopg

PROJECT = "bench_psycopg"
TABLE = "bench_psycopg_train"
COMMAND = ".pgmodels/venv/bin/python benchmarks/bench_psycopg.py --dsn \"$(.pgmodels/venv/bin/pgmodels db url)\""


def setup(conn: psycopg.Connection) -> None:
    """A small classifier on four numeric features (trained once, kept between runs)."""
    if conn.execute("SELECT count(*) FROM pgmodels.overview WHERE project = %s AND deployed", [PROJECT]).fetchone()[0]:
        return
    conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    conn.execute(f"""CREATE TABLE {TABLE} AS
                     SELECT (i % 17)::real AS a, ((i * 7) % 23)::real AS b, ((i * 3) % 11)::real AS c,
                            (i % 5)::real AS d, ((i % 17) + ((i * 7) % 23) > 20)::int AS y
                       FROM generate_series(1, 2000) AS i""")
    conn.execute("SET pgmodels.progress_level = 'off'")
    conn.execute("SELECT * FROM train(%s, 'classification', %s, 'y', 'xgboost', '{\"n_estimators\": 20}')",
                 [PROJECT, TABLE]).fetchall()


def per_row(conn, rows):
    out = []
    for features in rows:
        out.append(conn.execute("SELECT predict(%s, %s::real[])", [PROJECT, features]).fetchone()[0])
    return out


def predict_batch(conn, rows):
    return [r[0] for r in conn.execute("SELECT predict_batch(%s, %s::real[])", [PROJECT, rows])]


def unnest(conn, rows):
    columns = list(zip(*rows))
    got = conn.execute("""SELECT u.k, predict(%s, ARRAY[u.a, u.b, u.c, u.d])
                            FROM unnest(%s::bigint[], %s::real[], %s::real[], %s::real[], %s::real[]) AS u(k, a, b, c, d)
                           ORDER BY u.k""", [PROJECT, list(range(len(rows))), *[list(c) for c in columns]]).fetchall()
    return [p for _, p in got]


WAYS = {"per_row": per_row, "predict_batch": predict_batch, "unnest": unnest}


def run(dsn: str, n_rows: int, repeat: int) -> dict:
    rnd = random.Random(7)
    rows = [[float(rnd.randrange(17)), float(rnd.randrange(23)), float(rnd.randrange(11)), float(rnd.randrange(5))]
            for _ in range(n_rows)]
    times: dict[str, list[float]] = {w: [] for w in WAYS}
    with psycopg.connect(dsn, autocommit=True) as conn:
        setup(conn)
        answers = {w: fn(conn, rows) for w, fn in WAYS.items()}  # warm: model loaded, statements prepared
        if len({tuple(a) for a in answers.values()}) != 1:
            raise SystemExit("bench_psycopg: the three ways disagree")
        order = list(WAYS)
        for trial in range(repeat):
            for w in order[trial % len(order):] + order[:trial % len(order)]:
                start = time.perf_counter()
                got = WAYS[w](conn, rows)
                times[w].append(time.perf_counter() - start)
                assert len(got) == n_rows
        server = conn.execute("SHOW server_version").fetchone()[0]
    result = {w: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t),
                  "rows_per_s": n_rows / statistics.median(t), "trials": t} for w, t in times.items()}
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": f"{COMMAND} --rows {n_rows} --repeat {repeat}",
        "rows": n_rows, "repeat": repeat, "cpus": os.cpu_count(), "machine": platform.machine(),
        "python": platform.python_version(), "psycopg": psycopg.__version__, "server_version": server,
        "load_average_at_start": os.getloadavg(),
        "ways": result,
        "ratios": {"per_row_over_predict_batch": result["per_row"]["median_s"] / result["predict_batch"]["median_s"],
                   "per_row_over_unnest": result["per_row"]["median_s"] / result["unnest"]["median_s"]},
    }


def report(r: dict) -> str:
    lines = [f"{r['rows']} rows, {r['repeat']} alternating trials ({r['date']})",
             f"{'way':<15}{'median':>11}{'min':>11}{'max':>11}{'rows/s':>12}"]
    for w, v in r["ways"].items():
        lines.append(f"{w:<15}{v['median_s'] * 1000:>9.1f}ms{v['min_s'] * 1000:>9.1f}ms{v['max_s'] * 1000:>9.1f}ms"
                     f"{v['rows_per_s']:>12,.0f}")
    lines.append(f"per_row / predict_batch = {r['ratios']['per_row_over_predict_batch']:.1f}x, "
                 f"per_row / unnest = {r['ratios']['per_row_over_unnest']:.1f}x")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dsn", required=True)
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=9)
    p.add_argument("--out", help="write the results as JSON here (default benchmarks/results/psycopg-<date>.json)")
    args = p.parse_args(argv)
    r = run(args.dsn, args.rows, args.repeat)
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"psycopg-{r['date'][:10]}.json"
    out.write_text(json.dumps(r, indent=2) + "\n")
    print(report(r))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
