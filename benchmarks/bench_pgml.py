"""pgmodels_pgml benchmark: PostgresML's pgml.predict and pgml.predict_batch on pgmodels,
against pgmodels' own predict and the raw model in-process.

A 20-tree XGBoost classifier is trained with pgml.train on PostgresML's breast_cancer
table (pgml.load_dataset, 569 rows of 30 features); the scored table repeats those rows
(--copies times). Sides, alternated (the order turns every repetition) and repeated:

- ``pgml.predict`` per row: ``SELECT sum(pgml.predict('bench_pgml', ARRAY[30 columns]))``;
- pgmodels' ``predict`` per row, the same statement: what the pgml wrapper costs;
- ``pgml.predict_batch`` over the rows stored flattened in one real[] (one call);
- the raw model in-process: the same ONNX artifact (export_onnx) in onnxruntime in this
  Python process, one thread, rows already in a numpy array (in its favour): one run per
  row, and one run over all rows.

Every side must give the same predictions. Usage:

    .pgmodels/venv/bin/python benchmarks/bench_pgml.py --dsn "$(.pgmodels/venv/bin/pgmodels db url)"
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time

import numpy as np
import psycopg

PROJECT = "bench_pgml"
COMMAND = ".pgmodels/venv/bin/python benchmarks/bench_pgml.py --dsn \"$(.pgmodels/venv/bin/pgmodels db url)\""


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", required=True, help="libpq URL of a database where pgmodels_pgml may be created")
    p.add_argument("--copies", type=int, default=20, help="times the 569 rows are repeated (default 20)")
    p.add_argument("--repeat", type=int, default=5, help="alternated repetitions (default 5)")
    p.add_argument("--trees", type=int, default=20, help="XGBoost trees (default 20)")
    p.add_argument("--out", help="write every raw number to this JSON file")
    args = p.parse_args(argv)
    if min(args.copies, args.repeat, args.trees) < 1:
        p.error("sizes must be positive")
    return args


def setup(conn, args) -> list[str]:
    conn.execute("CREATE EXTENSION IF NOT EXISTS pgmodels_pgml CASCADE")
    conn.execute("SELECT pgml.load_dataset('breast_cancer')")
    columns = [r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'pgml.breast_cancer'::regclass AND attnum > 0 "
        "AND attname <> 'malignant' ORDER BY attnum")]
    cols = ", ".join(f'"{c}"' for c in columns)
    conn.execute("DROP TABLE IF EXISTS bench_pgml_rows, bench_pgml_flat")
    conn.execute(f"CREATE TABLE bench_pgml_rows AS SELECT row_number() OVER () AS id, ARRAY[{cols}] AS features "
                 f"FROM generate_series(1, {args.copies}) g, pgml.breast_cancer")
    conn.execute("CREATE TABLE bench_pgml_flat AS SELECT array_agg(f ORDER BY id, i) AS flat "
                 "FROM bench_pgml_rows, unnest(features) WITH ORDINALITY u(f, i)")
    conn.execute("ANALYZE bench_pgml_rows")
    conn.execute(f"SELECT * FROM pgml.train('{PROJECT}', 'classification', 'pgml.breast_cancer', 'malignant', "
                 f"algorithm => 'xgboost', hyperparams => '{{\"n_estimators\": {args.trees}}}')")
    conn.execute(f"SELECT * FROM pgml.deploy('{PROJECT}', 'most_recent', 'xgboost')")
    return columns


STATEMENTS = {
    "pgml_predict_rowwise": f"SELECT array_agg(pgml.predict('{PROJECT}', features) ORDER BY id) FROM bench_pgml_rows",
    "pgmodels_predict_rowwise": f"SELECT array_agg(predict('{PROJECT}', features) ORDER BY id) FROM bench_pgml_rows",
    "pgml_predict_batch": f"SELECT array_agg(p) FROM bench_pgml_flat, pgml.predict_batch('{PROJECT}', flat) p",
}


def in_process(artifact: bytes, X: np.ndarray):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(artifact, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def rowwise():
        return [int(session.run(["label"], {name: X[i:i + 1]})[0][0]) for i in range(len(X))]

    def batch():
        return [int(v) for v in session.run(["label"], {name: X})[0]]
    return {"raw_rowwise": rowwise, "raw_batch": batch}


def main(argv=None) -> int:
    args = parse_args(argv)
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute("SET max_parallel_workers_per_gather = 0")  # one backend, like the one raw process
        setup(conn, args)
        X = np.array([r[0] for r in conn.execute("SELECT features FROM bench_pgml_rows ORDER BY id")], dtype=np.float32)
        artifact = conn.execute(f"SELECT export_onnx('{PROJECT}')").fetchone()[0]
        local = in_process(artifact, X)
        sides = {**{k: (lambda s=s: [int(v) for v in conn.execute(s).fetchone()[0]]) for k, s in STATEMENTS.items()},
                 **local}
        for fn in sides.values():  # warm: models loaded, plans cached
            fn()
        times = {k: [] for k in sides}
        answers = {}
        order = list(sides)
        for rep in range(args.repeat):
            turn = order[rep % len(order):] + order[:rep % len(order)]
            for side in turn:
                start = time.perf_counter()
                answers[side] = sides[side]()
                times[side].append(time.perf_counter() - start)
        n = len(X)
        agree = all(a == answers["raw_batch"] for a in answers.values())
        median = {k: statistics.median(v) for k, v in times.items()}
        results = {
            "meta": {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     "command": f"{COMMAND} --copies {args.copies} --repeat {args.repeat} --trees {args.trees}",
                     "rows": n, "load_average_at_start": os.getloadavg(), "cpus": os.cpu_count()},
            "sides": {k: {"all_s": v, "median_s": median[k], "min_s": min(v), "max_s": max(v),
                          "per_row_us": median[k] / n * 1e6} for k, v in times.items()},
            "ratio": {
                "pgml_predict_vs_pgmodels_predict": median["pgml_predict_rowwise"] / median["pgmodels_predict_rowwise"],
                "pgml_predict_vs_raw_rowwise": median["pgml_predict_rowwise"] / median["raw_rowwise"],
                "pgml_predict_batch_vs_raw_batch": median["pgml_predict_batch"] / median["raw_batch"],
                "pgml_predict_batch_vs_pgml_predict": median["pgml_predict_batch"] / median["pgml_predict_rowwise"],
            },
            # the same ratios per repetition (both sides of a pair ran back to back), median and range
            "ratio_per_repetition": {
                name: sorted(a / b for a, b in zip(times[x], times[y]))
                for name, (x, y) in {"pgml_predict_vs_pgmodels_predict": ("pgml_predict_rowwise", "pgmodels_predict_rowwise"),
                                     "pgml_predict_vs_raw_rowwise": ("pgml_predict_rowwise", "raw_rowwise"),
                                     "pgml_predict_batch_vs_raw_batch": ("pgml_predict_batch", "raw_batch")}.items()},
            "predictions_agree": agree,
        }
    print(f"{n} rows, {args.repeat} alternated repetitions")
    print(f"{'side':28} {'median s':>10} {'min s':>9} {'max s':>9} {'us/row':>9}")
    for k, s in results["sides"].items():
        print(f"{k:28} {s['median_s']:10.4f} {s['min_s']:9.4f} {s['max_s']:9.4f} {s['per_row_us']:9.2f}")
    for k, v in results["ratio"].items():
        per = results["ratio_per_repetition"].get(k)
        print(f"{k}: {v:.2f}" + (f" (per repetition {min(per):.2f}-{max(per):.2f})" if per else ""))
    print(f"predictions agree: {agree}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
