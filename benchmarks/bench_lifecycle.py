"""pgmodels lifecycle benchmark: training, row-wise and batch scoring, cold start.

Each figure is a ratio against the baseline a user would otherwise run in their own
Python process, measured in the same run on the same data and the same ONNX artifact
(see benchmarks/README.md). Usage:

    .pgmodels/venv/bin/python benchmarks/bench_lifecycle.py --dsn "$(.pgmodels/venv/bin/pgmodels db url)"
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _data  # noqa: E402 - the helper modules live next to this script
import _db  # noqa: E402
import _inproc  # noqa: E402
import _report  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", required=True, help="libpq URL of a database with the pgmodels extension")
    p.add_argument("--rows", type=int, default=200_000, help="rows scored (default 200000)")
    p.add_argument("--train-rows", type=int, default=100_000, help="rows train() reads (default 100000)")
    p.add_argument("--trees", type=int, default=100, help="XGBoost trees, depth 6 (default 100)")
    p.add_argument("--repeat", type=int, default=3,
                   help="timed repetitions of training and of each scoring statement; medians are kept")
    p.add_argument("--cold-runs", type=int, default=5, help="fresh connections / processes for the cold start")
    p.add_argument("--chunk", type=int, default=10_000, help="rows per predict_batch() call in the chunked form")
    p.add_argument("--out", help="write every raw number and ratio to this JSON file")
    args = p.parse_args(argv)
    if min(args.rows, args.train_rows, args.trees, args.repeat, args.cold_runs, args.chunk) < 1:
        p.error("sizes and counts must be positive")
    if args.train_rows < 20:
        p.error("--train-rows must be at least 20 (train() keeps a stratified test split)")
    return args


def _step(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


def _median_run(runs: list[dict], key: str) -> dict:
    """The run whose `key` is the median (the lower one for an even count), with all values."""
    ordered = sorted(runs, key=lambda r: r[key])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen[key.removesuffix("_s") + "_all_s"] = [r[key] for r in runs]
    return chosen


def training(conn: psycopg.Connection, trees: int, repeat: int) -> dict:
    """train() and its baseline, alternated so that a noisy neighbour hurts both alike."""
    _db.warm_up_training(conn)
    _inproc.warm_up_training()
    db, baseline = [], []
    for _ in range(repeat):
        db.append(_db.train(conn, trees))
        baseline.append(_inproc.training(conn, trees))
    # The last version trained is the one deployed, and the one the scoring benchmarks use.
    return {"db": _median_run(db, "wall_s"), "baseline": _median_run(baseline, "fetch_fit_convert_s"),
            "served_model_id": db[-1]["model_id"]}


def rowwise(conn: psycopg.Connection, artifact: bytes, X, rows: int, repeat: int) -> dict:
    """predict() per row and the onnxruntime loop, alternated, so that a noisy neighbour
    hurts both alike; the median run of each, with every run's time and the spread."""
    db, baseline = [], []
    for _ in range(repeat):
        db.append(_db.rowwise(conn, rows, 1))
        baseline.append(_inproc.rowwise(artifact, X, 1))
    times = [r["serial"]["wall_s"] for r in db]
    chosen = sorted(db, key=lambda r: r["serial"]["wall_s"])[(len(db) - 1) // 2]
    chosen["serial"]["wall_all_s"] = times
    chosen["serial"]["per_row_all_us"] = [t / rows * 1e6 for t in times]
    base = _median_run(baseline, "wall_s")
    base["per_row_all_us"] = [t / len(X) * 1e6 for t in base["wall_all_s"]]
    return {"db": chosen, "baseline": base}


def run(args: argparse.Namespace) -> dict:
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        # Serial plans, so that a row's cost compares with one in-process loop.
        conn.execute(f"SET max_parallel_workers_per_gather = {_db.SERIAL_SETTING}")
        _step(f"loading {args.train_rows} training rows and {args.rows} scoring rows")
        data = _data.load(conn, args.train_rows, args.rows)
        results = {"meta": _report.meta(conn, args)}

        _step("training: train() in the database, then fetch + fit + to_onnx in-process")
        results["training"] = training(conn, args.trees, args.repeat)
        artifact = _db.export_onnx(conn)
        results["meta"]["artifact_bytes"] = len(artifact)
        results["meta"]["load_average_before_scoring"] = os.getloadavg()

        X = data["X_score"]
        _step("row-wise: predict() per row and an onnxruntime loop, alternated")
        results["rowwise"] = rowwise(conn, artifact, X, args.rows, args.repeat)

        _step("batch: predict_batch() in each SQL form, then one onnxruntime run")
        results["batch"] = {"db": _db.batch(conn, args.rows, args.repeat, args.chunk),
                            "baseline": _inproc.batch(artifact, X, args.repeat)}

    _step("cold start: fresh connections, then fresh python processes")
    probe = X[0].tolist()
    results["cold_start"] = {"db": _db.cold_start(args.dsn, probe, args.cold_runs),
                             "baseline": _inproc.cold_start(artifact, probe, args.cold_runs)}
    results["meta"]["load_average_at_end"] = os.getloadavg()
    _report.ratios(results)
    results["summary"] = _report.summarize(results)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        results = run(args)
    except psycopg.Error as e:
        print(f"bench_lifecycle: database error: {e}", file=sys.stderr)
        return 1
    print(_report.table(results["summary"]))
    print()
    print(_report.details(results))
    print(f"\nreproduce: {results['meta']['command']}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
