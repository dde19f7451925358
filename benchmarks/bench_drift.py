"""pgmodels drift benchmark: drift() in the database against the script a user would write.

A 20-tree XGBoost classifier is trained on 20,000 rows of 8 float features; the current
data is 1,000,000 rows of the same 8 features, one of them shifted. Two sides, alternated
so that a noisy neighbour hurts both alike, repeated:

- pgmodels: ``SELECT * FROM drift(project, relation)`` (per feature PSI, KS, null-rate
  change and status, and the prediction distribution, which scores every row);
- the script: a Python process that fetches the same rows with psycopg (fetchall into a
  numpy array), reads the model's reference profile from the catalog, scores the rows
  with onnxruntime (the session made once, outside the timing: in the script's favour),
  and computes the same metrics with the same numpy/scipy code (pgmodels.monitor.drift).

Both must give the same statuses. Usage:

    .pgmodels/venv/bin/python benchmarks/bench_drift.py --dsn "$(.pgmodels/venv/bin/pgmodels db url)"
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

from pgmodels.monitor import drift as metrics

PROJECT = "bench_drift"
FEATURES = [f"f{i}" for i in range(1, 9)]
TRAIN, CURRENT = "bench_drift_train", "bench_drift_current"
COMMAND = ".pgmodels/venv/bin/python benchmarks/bench_drift.py --dsn \"$(.pgmodels/venv/bin/pgmodels db url)\""


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", required=True, help="libpq URL of a database with the pgmodels extension")
    p.add_argument("--rows", type=int, default=1_000_000, help="current rows (default 1000000)")
    p.add_argument("--train-rows", type=int, default=20_000, help="training rows (default 20000)")
    p.add_argument("--repeat", type=int, default=5, help="alternated repetitions (default 5)")
    p.add_argument("--out", help="write every raw number to this JSON file")
    args = p.parse_args(argv)
    if min(args.rows, args.repeat) < 1 or args.train_rows < 100:
        p.error("sizes must be positive (and --train-rows at least 100)")
    return args


def _step(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


def _table_sql(name: str, rows: int, shift: float) -> str:
    # Box-Muller: standard normal features from uniform random(); f3 shifted by `shift`
    cols = ", ".join(f"sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) {'+ ' + str(shift) if f == 'f3' else ''}"
                     f" AS {f}" for f in FEATURES)
    return (f"CREATE TABLE {name} AS SELECT s.*, (s.f1 + s.f2 > 0)::int AS y FROM "
            f"(SELECT {cols} FROM generate_series(1, {rows})) s")


def prepare(conn, args) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {TRAIN}, {CURRENT}")
    conn.execute("SELECT setseed(0.42)")
    conn.execute(_table_sql(TRAIN, args.train_rows, 0.0))
    conn.execute(_table_sql(CURRENT, args.rows, 0.5))
    conn.execute(f"ALTER TABLE {CURRENT} DROP COLUMN y")
    conn.execute(f"VACUUM ANALYZE {CURRENT}")
    _step(f"training on {args.train_rows} rows")
    conn.execute("SELECT * FROM train(%s, 'classification', %s, 'y', 'xgboost', '{\"n_estimators\": 20}')",
                 [PROJECT, TRAIN]).fetchall()


def in_database(conn) -> tuple[float, dict]:
    start = time.perf_counter()
    rows = conn.execute("SELECT feature, status, psi FROM drift(%s, %s)", [PROJECT, CURRENT]).fetchall()
    return time.perf_counter() - start, {r[0]: r[1] for r in rows}


def script(dsn: str, session) -> tuple[float, dict]:
    start = time.perf_counter()
    with psycopg.connect(dsn) as c:
        profile = c.execute("SELECT m.training -> 'profile' FROM pgmodels.models m JOIN pgmodels.projects p "
                            "ON p.id = m.project_id JOIN LATERAL (SELECT d.model_id FROM pgmodels.deployments d "
                            "WHERE d.project_id = p.id ORDER BY d.id DESC LIMIT 1) d ON d.model_id = m.id "
                            "WHERE p.name = %s", [PROJECT]).fetchone()[0]
        X = np.array(c.execute(f"SELECT {', '.join(FEATURES)} FROM {CURRENT}").fetchall(), dtype=np.float64)
    out = {}
    for j, name in enumerate(FEATURES):
        out[name] = metrics.numeric(profile["features"][name], X[:, j])["status"]
    labels = session.run(["label"], {session.get_inputs()[0].name: X.astype(np.float32)})[0].reshape(-1)
    out["(prediction)"] = metrics.categorical(profile["target"], labels.astype(str).tolist())["status"]
    return time.perf_counter() - start, out


def main(argv=None) -> int:
    import onnxruntime as ort

    args = parse_args(argv)
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        prepare(conn, args)
        artifact = bytes(conn.execute("SELECT export_onnx(%s)", [PROJECT]).fetchone()[0])
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1  # as each backend runs it
        session = ort.InferenceSession(artifact, options, providers=["CPUExecutionProvider"])
        _step("warming up both sides")
        db_status, script_status = in_database(conn)[1], script(args.dsn, session)[1]
        if db_status != script_status:
            raise SystemExit(f"the two sides disagree: {db_status} vs {script_status}")
        db_s, script_s, ratios = [], [], []
        for i in range(args.repeat):
            _step(f"repetition {i + 1} of {args.repeat}")
            sides = [("db", lambda: in_database(conn)[0]), ("script", lambda: script(args.dsn, session)[0])]
            got = {}
            for side, run in (sides if i % 2 == 0 else sides[::-1]):
                got[side] = run()
            db_s.append(got["db"])
            script_s.append(got["script"])
            ratios.append(got["db"] / got["script"])
    results = {
        "meta": {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                 "command": f"{COMMAND} --rows {args.rows} --train-rows {args.train_rows} --repeat {args.repeat}",
                 "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(),
                 "args": {k: v for k, v in vars(args).items() if k != "dsn"}},
        "drift": {"median_s": statistics.median(db_s), "all_s": db_s},
        "script": {"median_s": statistics.median(script_s), "all_s": script_s},
        "ratio": {"drift_vs_script": statistics.median(ratios),
                  "spread": [round(min(ratios), 3), round(max(ratios), 3)]},
        "statuses": db_status,
    }
    r = results["ratio"]
    print(f"drift() {results['drift']['median_s']:.3f} s, psycopg + numpy/scipy script "
          f"{results['script']['median_s']:.3f} s over {args.rows} rows: {r['drift_vs_script']:.2f}x the script's time "
          f"(spread {r['spread']}, target <= 1.0); statuses {db_status}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
