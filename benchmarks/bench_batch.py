"""pgmodels batch benchmark: a scheduled scoring job against the script a user would write.

The same 100-tree, depth-6 XGBoost classifier (the lifecycle benchmark's) scores a
200,000-row table of 8 float features and a key into an output table, three ways, in one
run, alternated so that a noisy neighbour hurts every side alike:

- pgmodels: ``CALL run_batch_job(...)``, a full run (every row rescored, upserted by key);
- the script: a Python process that fetches the rows with psycopg, predicts with the same
  ONNX artifact in onnxruntime, COPYs the predictions into a staging table and upserts
  them with one INSERT ... ON CONFLICT (what the seeds' "ML service" batch job does);
- the limit: onnxruntime predicting the same rows already in memory, one thread, as
  each backend runs it.

and an incremental run after 1 % of the rows changed, as a fraction of a full run. Both
outputs start full (the nightly job's steady state). Usage:

    .pgmodels/venv/bin/python benchmarks/bench_batch.py --dsn "$(.pgmodels/venv/bin/pgmodels db url)"
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

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _data  # noqa: E402 - the helper modules live next to this script
import _db  # noqa: E402

SRC, OUT_JOB, OUT_SCRIPT = _data.table("batch_src"), _data.table("batch_out_job"), _data.table("batch_out_script")
JOB, INC_JOB, OUT_INC = "bench_batch_full", "bench_batch_incremental", _data.table("batch_out_inc")
COMMAND = ".pgmodels/venv/bin/python benchmarks/bench_batch.py --dsn \"$(.pgmodels/venv/bin/pgmodels db url)\""


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", required=True, help="libpq URL of a database with the pgmodels extension")
    p.add_argument("--rows", type=int, default=200_000, help="rows of the source table (default 200000)")
    p.add_argument("--train-rows", type=int, default=20_000, help="rows the model is trained on (default 20000)")
    p.add_argument("--trees", type=int, default=100, help="XGBoost trees, depth 6 (default 100)")
    p.add_argument("--repeat", type=int, default=5, help="alternated repetitions; medians and spreads are kept")
    p.add_argument("--chunk", type=int, default=10_000, help="the job's chunk_rows (default 10000)")
    p.add_argument("--out", help="write every raw number to this JSON file")
    args = p.parse_args(argv)
    if min(args.rows, args.train_rows, args.trees, args.repeat, args.chunk) < 1 or args.train_rows < 20:
        p.error("sizes and counts must be positive (and --train-rows at least 20)")
    return args


def _step(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


def prepare(conn: psycopg.Connection, args) -> bytes:
    """The data, the model (trained and deployed), its artifact, and the two jobs."""
    _data.load(conn, args.train_rows, args.rows)
    features = ", ".join(f"features[{i + 1}] AS {f}" for i, f in enumerate(_data.FEATURES))
    for statement in (f"SELECT drop_batch_job(j.job, true) FROM pgmodels.batch_jobs j WHERE j.job IN ('{JOB}', '{INC_JOB}')",
                      f"DROP TABLE IF EXISTS {SRC}, {OUT_SCRIPT}",
                      f"CREATE TABLE {SRC} AS SELECT id, {features}, timestamptz '2026-01-01' + id * interval '1 ms' "
                      f"AS updated_at FROM {_data.table('score')}",
                      f"ALTER TABLE {SRC} ADD PRIMARY KEY (id)",
                      f"CREATE INDEX ON {SRC} (updated_at)",
                      f"VACUUM ANALYZE {SRC}",
                      f"CREATE TABLE {OUT_SCRIPT} (id integer PRIMARY KEY, prediction real, model_id bigint NOT NULL, "
                      "model_version integer NOT NULL, scored_at timestamptz NOT NULL, run_id bigint NOT NULL)"):
        conn.execute(statement)
    _step(f"training the {args.trees}-tree model on {args.train_rows} rows")
    _db.train(conn, args.trees)
    conn.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, chunk_rows => %s, max_retries => 0)",
                 [JOB, _db.PROJECT, SRC, OUT_JOB, args.chunk])
    conn.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, incremental_column => 'updated_at', "
                 "chunk_rows => %s, max_retries => 0)", [INC_JOB, _db.PROJECT, SRC, OUT_INC, args.chunk])
    return _db.export_onnx(conn)


def job_run(conn: psycopg.Connection, job: str) -> dict:
    start = time.perf_counter()
    conn.execute("CALL run_batch_job(%s)", [job])
    wall = time.perf_counter() - start
    run = conn.execute("SELECT status, mode, rows_scored, error FROM pgmodels.batch_runs WHERE job = %s "
                       "ORDER BY run_id DESC LIMIT 1", [job]).fetchone()
    if run[0] != "succeeded":
        raise SystemExit(f"batch run failed: {run[3]}")
    return {"wall_s": wall, "mode": run[1], "rows": run[2]}


def _session(artifact: bytes):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1  # as each backend runs it
    return ort.InferenceSession(artifact, options, providers=["CPUExecutionProvider"])


def script_run(dsn: str, session, model: tuple[int, int]) -> dict:
    """The batch job a user would write: fetch, predict, COPY to staging, upsert."""
    columns = ", ".join(_data.FEATURES)
    start = time.perf_counter()
    with psycopg.connect(dsn) as c:
        rows = c.execute(f"SELECT id, {columns} FROM {SRC}").fetchall()
        data = np.array(rows, dtype=np.float64)
        ids, X = data[:, 0].astype(np.int64), data[:, 1:].astype(np.float32)
        fetched = time.perf_counter()
        labels = session.run(["label"], {session.get_inputs()[0].name: X})[0].reshape(-1)
        predicted = time.perf_counter()
        run_id = int(time.time())
        c.execute(f"CREATE TEMP TABLE staging (LIKE {OUT_SCRIPT}) ON COMMIT DROP")
        with c.cursor().copy("COPY staging (id, prediction, model_id, model_version, scored_at, run_id) "
                             "FROM STDIN") as copy:
            now = datetime.datetime.now(datetime.timezone.utc)
            for i, label in zip(ids.tolist(), labels.tolist()):
                copy.write_row((i, float(label), model[0], model[1], now, run_id))
        c.execute(f"INSERT INTO {OUT_SCRIPT} SELECT * FROM staging ON CONFLICT (id) DO UPDATE SET "
                  "prediction = EXCLUDED.prediction, model_id = EXCLUDED.model_id, "
                  "model_version = EXCLUDED.model_version, scored_at = EXCLUDED.scored_at, run_id = EXCLUDED.run_id")
    end = time.perf_counter()
    return {"wall_s": end - start, "fetch_s": fetched - start, "predict_s": predicted - fetched,
            "write_s": end - predicted, "rows": len(ids)}


def limit_run(session, X: np.ndarray) -> dict:
    start = time.perf_counter()
    session.run(["label"], {session.get_inputs()[0].name: X})
    return {"wall_s": time.perf_counter() - start, "rows": len(X)}


def _spread(values: list[float]) -> list[float]:
    return [round(min(values), 3), round(max(values), 3)]


def main(argv=None) -> int:
    args = parse_args(argv)
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        artifact = prepare(conn, args)
        session = _session(artifact)
        model = conn.execute("SELECT model_id, version FROM pgmodels.overview WHERE project = %s AND deployed",
                             [_db.PROJECT]).fetchone()
        X = np.array(conn.execute(f"SELECT ARRAY[{', '.join(_data.FEATURES)}] FROM {SRC} ORDER BY id").fetchall(),
                     dtype=np.float32).reshape(-1, len(_data.FEATURES))
        _step("warming up: one run of each side fills both outputs")
        job_run(conn, JOB), job_run(conn, INC_JOB), script_run(args.dsn, session, model), limit_run(session, X)
        jobs, scripts, limits, incrementals, ratios = [], [], [], [], []
        for i in range(args.repeat):
            _step(f"repetition {i + 1} of {args.repeat}")
            sides = [("job", lambda: job_run(conn, JOB)), ("script", lambda: script_run(args.dsn, session, model))]
            results = {}
            for side, run in (sides if i % 2 == 0 else sides[::-1]):
                results[side] = run()
            limits.append(limit_run(session, X))
            jobs.append(results["job"])
            scripts.append(results["script"])
            ratios.append(results["script"]["wall_s"] / results["job"]["wall_s"])
            changed = max(1, args.rows // 100)
            conn.execute(f"UPDATE {SRC} SET f1 = f1, updated_at = clock_timestamp() "
                         f"WHERE id IN (SELECT id FROM {SRC} ORDER BY random() LIMIT {changed})")
            incrementals.append(job_run(conn, INC_JOB))
            if incrementals[-1]["mode"] != "incremental" or incrementals[-1]["rows"] != changed:
                raise SystemExit(f"the incremental run scored {incrementals[-1]}, expected {changed} rows")
        agree = conn.execute(f"SELECT count(*) FROM {OUT_JOB} j JOIN {OUT_SCRIPT} s USING (id) "
                             "WHERE j.prediction IS DISTINCT FROM s.prediction").fetchone()[0]
        job_s = statistics.median(r["wall_s"] for r in jobs)
        script_s = statistics.median(r["wall_s"] for r in scripts)
        limit_s = statistics.median(r["wall_s"] for r in limits)
        inc_s = statistics.median(r["wall_s"] for r in incrementals)
        results = {
            "meta": {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     "command": f"{COMMAND} --rows {args.rows} --trees {args.trees} --repeat {args.repeat} "
                                f"--chunk {args.chunk}",
                     "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(),
                     "args": {k: v for k, v in vars(args).items() if k != "dsn"}},
            "job": {"median_s": job_s, "rows_per_s": args.rows / job_s, "all_s": [r["wall_s"] for r in jobs]},
            "script": {"median_s": script_s, "rows_per_s": args.rows / script_s,
                       "all_s": [r["wall_s"] for r in scripts], "runs": scripts},
            "limit": {"median_s": limit_s, "rows_per_s": args.rows / limit_s},
            "incremental": {"median_s": inc_s, "all_s": [r["wall_s"] for r in incrementals],
                            "rows": incrementals[-1]["rows"]},
            "ratios": {"job_vs_script": statistics.median(ratios), "job_vs_script_spread": _spread(ratios),
                       "job_vs_limit": limit_s / job_s, "incremental_fraction": inc_s / job_s},
            "predictions_that_differ": agree,
        }
    r = results["ratios"]
    print(f"{'':34}{'median s':>10}{'rows/s':>12}")
    for label, key in (("pgmodels batch job (full run)", "job"), ("psycopg + onnxruntime script", "script"),
                       ("onnxruntime in memory (limit)", "limit")):
        print(f"{label:34}{results[key]['median_s']:>10.3f}{results[key]['rows_per_s']:>12.0f}")
    print(f"{'incremental run, 1 % changed':34}{inc_s:>10.3f}")
    print(f"job vs script: {r['job_vs_script']:.2f}x (spread {r['job_vs_script_spread']}, target >= 1.0); "
          f"job vs limit: {r['job_vs_limit']:.2f}; incremental: {100 * r['incremental_fraction']:.1f} % of a full "
          f"run (target <= 5 %); predictions that differ: {agree}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
