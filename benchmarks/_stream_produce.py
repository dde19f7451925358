"""A producer of the stream benchmark, in its own process: 100-row transactions into a table.

Each transaction is one statement, ``INSERT INTO t (f1 .. f8) SELECT * FROM unnest($1::real[],
..., $8::real[])`` (psycopg prepares it after a few runs), then ``COMMIT``: what an application
that batches its events writes. The rows cycle through a pool drawn from the lifecycle
benchmark's distribution. ``--rate 0`` inserts flat out; a positive rate (events/s of this
process) schedules transaction k at ``start + k * batch / rate`` and sleeps until then.
With ``--record`` each transaction's first and last key and the client's wall clock
(``time.time()``) just after ``COMMIT`` returned are kept. Prints one JSON object.

    python benchmarks/_stream_produce.py --dsn URL --table T --seconds 10 [--rate 500] [--start-at EPOCH]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _data  # noqa: E402


def insert_sql(table: str) -> str:
    return (f"INSERT INTO {table} ({', '.join(_data.FEATURES)}) SELECT * FROM unnest("
            + ", ".join(["%s::real[]"] * len(_data.FEATURES)) + ")")


def pool(seed: int, rows: int = 10_000) -> list[list[float]]:
    """Columns of the row pool: 8 lists of python floats (float32 values)."""
    X, _ = _data.make_rows(rows, 100 + seed)
    return [X[:, j].tolist() for j in range(X.shape[1])]


def produce(dsn: str, table: str, seconds: float, rate: float = 0.0, batch: int = 100, seed: int = 0,
            start_at: float | None = None, record: bool = False, max_rows: int = 0) -> dict:
    columns = pool(seed)
    n_pool = len(columns[0]) - batch
    statement = insert_sql(table) + (" RETURNING id" if record else "")
    commits: list[tuple[int, int, float]] = []
    rows = txns = 0
    with psycopg.connect(dsn, autocommit=False, application_name="pgmodels bench producer") as conn:
        conn.execute("SELECT 1")
        conn.commit()
        if start_at is not None:
            time.sleep(max(0.0, start_at - time.time()))
        start = time.time()
        stop = start + seconds
        offset = 0
        while True:
            if rate > 0:
                due = start + txns * batch / rate
                now = time.time()
                if due >= stop:
                    break
                if due > now:
                    time.sleep(due - now)
            elif time.time() >= stop:
                break
            if max_rows and rows >= max_rows:
                break
            params = [c[offset:offset + batch] for c in columns]
            offset = (offset + batch) % n_pool
            cur = conn.execute(statement, params)
            ids = [r[0] for r in cur.fetchall()] if record else None
            conn.commit()
            committed = time.time()
            if record:
                commits.append((min(ids), max(ids), committed))
            rows += batch
            txns += 1
        elapsed = time.time() - start
    result = {"rows": rows, "txns": txns, "elapsed_s": elapsed, "rows_per_s": rows / elapsed if elapsed else 0.0,
              "start": start}
    if record:
        result["commits"] = commits
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", required=True)
    p.add_argument("--table", required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--rate", type=float, default=0.0, help="events/s of this process (0: flat out)")
    p.add_argument("--batch", type=int, default=100, help="rows per transaction")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start-at", type=float, help="epoch seconds to start at (producers start together)")
    p.add_argument("--max-rows", type=int, default=0, help="stop after this many rows (0: no limit)")
    p.add_argument("--record", action="store_true")
    a = p.parse_args(argv)
    print(json.dumps(produce(a.dsn, a.table, a.seconds, a.rate, a.batch, a.seed, a.start_at, a.record, a.max_rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
