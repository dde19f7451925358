"""pgmodels explanation benchmark: what explaining a prediction costs, against predicting it
and against shap's TreeExplainer in-process.

The lifecycle benchmark's data (_data.py: schema pgmodels_bench, 8 float features, a
binary target) and its model recipe: XGBoost, 100 trees of depth 6, trained by train() as
project ``bench_explain`` (its explainer record is made then). Figures, each side
alternated with the other in every repetition so that a noisy neighbour hurts both alike,
medians and spread kept:

- **row-wise**: ``explain_prediction()`` once per row of the score table, in one
  statement (a lateral call per row), against ``predict()`` once per row; the ratio is
  explain / predict (target: at most 20);
- **batch**: ``explain_batch()`` over all the score rows in one call, against
  ``predict_batch()`` over the same rows (target: at most 20);
- **against shap**: shap's ``TreeExplainer`` (its C++ TreeSHAP) on the same recipe fitted
  in-process on the same split, one row at a time and all rows at once, against
  pgmodels' explainer core (python_udfs/pgmodels/explain) in-process on that same native
  model, and against the SQL figures above;
- **training**: the extra time train()'s child spends making the explainer record
  (``train_model`` in-process with and without the explainer step, alternated), and the
  explainer's own seconds as train() recorded them.

Usage:

    .pgmodels/venv/bin/python benchmarks/bench_explain.py --dsn "$(.pgmodels/venv/bin/pgmodels db url)"
"""

from __future__ import annotations

import argparse
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
from _db import SERVER_ELAPSED, train_sql  # noqa: E402

PROJECT = "bench_explain"
COMMAND = ".pgmodels/venv/bin/python benchmarks/bench_explain.py --dsn \"$(.pgmodels/venv/bin/pgmodels db url)\""


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", required=True, help="libpq URL of a database with the pgmodels extension")
    p.add_argument("--rows", type=int, default=2000, help="rows explained (default 2000)")
    p.add_argument("--train-rows", type=int, default=20_000, help="rows train() reads (default 20000)")
    p.add_argument("--trees", type=int, default=100, help="XGBoost trees, depth 6 (default 100)")
    p.add_argument("--repeat", type=int, default=5, help="alternated repetitions (default 5)")
    p.add_argument("--out", help="write every raw number to this JSON file")
    args = p.parse_args(argv)
    if min(args.rows, args.trees, args.repeat) < 1 or args.train_rows < 100:
        p.error("sizes must be positive (and --train-rows at least 100)")
    return args


def _step(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "all": values}


def _timed(conn, statement: str) -> tuple[float, float, float]:
    start = time.perf_counter()
    value, server = conn.execute(statement).fetchone()
    return time.perf_counter() - start, server, float(value or 0.0)


SQL = {
    "predict_rowwise": f"SELECT sum(predict('{PROJECT}', s.features)), {SERVER_ELAPSED} FROM {_data.table('score')} s",
    "explain_rowwise": f"SELECT sum(e.contribution), {SERVER_ELAPSED} FROM {_data.table('score')} s, "
                       f"explain_prediction('{PROJECT}', s.features) e",
    "predict_batch": f"SELECT sum(p), {SERVER_ELAPSED} FROM predict_batch('{PROJECT}', "
                     f"(SELECT array_agg(features ORDER BY id) FROM {_data.table('score')})) p",
    "explain_batch": f"SELECT sum(e.contribution), {SERVER_ELAPSED} FROM explain_batch('{PROJECT}', "
                     f"(SELECT array_agg(features ORDER BY id) FROM {_data.table('score')})) e",
}


def database(conn, repeat: int) -> dict:
    """The SQL sides, each pair alternated."""
    one = f"(SELECT features FROM {_data.table('score')} ORDER BY id LIMIT 1)"
    for warm in (f"SELECT predict('{PROJECT}', {one})", f"SELECT * FROM explain_prediction('{PROJECT}', {one})"):
        conn.execute(warm).fetchall()  # the model and its explainer loaded in this backend
    out = {name: {"wall_s": [], "server_s": []} for name in SQL}
    for _ in range(repeat):
        for pair in (("predict_rowwise", "explain_rowwise"), ("predict_batch", "explain_batch")):
            for name in pair:
                wall, server, _ = _timed(conn, SQL[name])
                out[name]["wall_s"].append(wall)
                out[name]["server_s"].append(server)
    return {name: {"sql": SQL[name], "wall_s": _spread(v["wall_s"]), "server_s": _spread(v["server_s"])}
            for name, v in out.items()}


def in_process(X_train, y_train, X: np.ndarray, trees: int, repeat: int) -> dict:
    """shap's TreeExplainer and pgmodels' explainer core on the same native model, fitted
    in-process with train()'s recipe on train()'s split; row at a time and all at once."""
    import shap
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from xgboost import XGBClassifier

    from pgmodels.explain import build
    from pgmodels.explain.explainer import Explainer

    n_test = int(np.ceil(0.25 * len(y_train)))
    Xt, _, yt, _ = train_test_split(X_train.astype(np.float64), y_train, test_size=n_test, random_state=42,
                                    stratify=y_train)
    pipeline = Pipeline([("model", XGBClassifier(n_estimators=trees, max_depth=6, random_state=0, n_jobs=1))])
    pipeline.fit(Xt, yt)
    theirs = shap.TreeExplainer(pipeline[-1])
    blob, _ = build.build(pipeline, "classification", _data.FEATURES, ["float"] * len(_data.FEATURES), Xt)
    ours = Explainer.load(blob)
    X = X.astype(np.float64)
    # the same numbers, first: ours on the native model against shap
    agree = float(np.abs(ours.explain(X[:50]).contributions[:, :, 0] - theirs.shap_values(X[:50])).max())
    sides = {k: [] for k in ("shap_rowwise", "core_rowwise", "shap_batch", "core_batch")}
    rows = X[:min(len(X), 500)]  # a row at a time: enough rows for a stable figure
    for _ in range(repeat):
        start = time.perf_counter()
        for i in range(len(rows)):
            theirs.shap_values(rows[i:i + 1])
        sides["shap_rowwise"].append((time.perf_counter() - start) / len(rows))
        start = time.perf_counter()
        for i in range(len(rows)):
            ours.explain(rows[i:i + 1])
        sides["core_rowwise"].append((time.perf_counter() - start) / len(rows))
        start = time.perf_counter()
        theirs.shap_values(X)
        sides["shap_batch"].append((time.perf_counter() - start) / len(X))
        start = time.perf_counter()
        ours.explain(X)
        sides["core_batch"].append((time.perf_counter() - start) / len(X))
    return {"max_abs_difference_from_shap": agree, "rowwise_rows": len(rows), "batch_rows": len(X),
            "per_row_s": {k: _spread(v) for k, v in sides.items()}}


def training_cost(X_train, y_train, trees: int, repeat: int) -> dict:
    """train()'s child work (fit, score, convert, explain) with and without the explainer
    step, alternated."""
    from pgmodels.explain import build
    from pgmodels.training import fit
    from pgmodels.training.fit import Column, TrainSpec

    spec = TrainSpec(task="classification", algorithm="xgboost", hyperparams={"n_estimators": trees, "max_depth": 6},
                     test_sampling="stratified")
    features = [Column(f, "float", X_train[:, j].astype(np.float64).tolist()) for j, f in enumerate(_data.FEATURES)]
    target = Column("label", "float", y_train.astype(float).tolist())
    real = fit.explain_build.build
    with_s, without_s, explainer_s = [], [], []
    try:
        for _ in range(repeat):
            fit.explain_build.build = real
            start = time.perf_counter()
            trained = fit.train_model(spec, features, target)
            with_s.append(time.perf_counter() - start)
            explainer_s.append(trained.explainer_info["seconds"])
            fit.explain_build.build = lambda *a, **k: (None, {"kind": None})
            start = time.perf_counter()
            fit.train_model(spec, features, target)
            without_s.append(time.perf_counter() - start)
    finally:
        fit.explain_build.build = real
    del build
    return {"with_explainer_s": _spread(with_s), "without_explainer_s": _spread(without_s),
            "explainer_step_s": _spread(explainer_s)}


def run(args) -> dict:
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute("SET max_parallel_workers_per_gather = 0")
        _step(f"loading {args.train_rows} training rows and {args.rows} rows to explain")
        data = _data.load(conn, args.train_rows, args.rows)
        _step(f"train(): {args.trees} trees of depth 6, with the explainer record")
        start = time.perf_counter()
        model_id = conn.execute(train_sql(PROJECT, _data.table("train_data"), args.trees)).fetchone()[0]
        train_wall = time.perf_counter() - start
        conn.execute("SELECT * FROM deploy(%s::bigint)", [model_id]).fetchall()
        info = conn.execute("SELECT training -> 'explainer' FROM pgmodels.models WHERE id = %s", [model_id]).fetchone()[0]
        meta = {"command": COMMAND + _options(args), "rows": args.rows, "train_rows": args.train_rows,
                "trees": args.trees, "repeat": args.repeat, "model_id": model_id,
                "server_version": conn.execute("SHOW server_version").fetchone()[0],
                "load_average_before": os.getloadavg()}
        _step("SQL: explain_prediction vs predict per row, explain_batch vs predict_batch, alternated")
        db = database(conn, args.repeat)
    _step("in-process: shap's TreeExplainer and pgmodels' core on the same native model, alternated")
    local = in_process(data["X_train"], data["y_train"], data["X_score"], args.trees, args.repeat)
    _step("training: train_model with and without the explainer step, alternated")
    training = training_cost(data["X_train"], data["y_train"], args.trees, max(2, args.repeat // 2))
    training["train_sql_wall_s"] = train_wall
    training["explainer_recorded"] = info
    meta["load_average_after"] = os.getloadavg()
    return {"meta": meta, "sql": db, "in_process": local, "training": training, "ratio": _ratios(db, local, training,
                                                                                                 args.rows)}


def _options(args) -> str:
    defaults = parse_args(["--dsn", "x"])
    out = "".join(f" --{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                  if k not in ("dsn", "out") and v != getattr(defaults, k))
    return out


def _ratios(db: dict, local: dict, training: dict, rows: int) -> dict:
    med = lambda side: side["wall_s"]["median"]  # noqa: E731
    per_row = lambda side: med(side) / rows  # noqa: E731
    pairs = lambda a, b: [x / y for x, y in zip(db[a]["wall_s"]["all"], db[b]["wall_s"]["all"])]  # noqa: E731
    row_pairs, batch_pairs = pairs("explain_rowwise", "predict_rowwise"), pairs("explain_batch", "predict_batch")
    shap = local["per_row_s"]
    return {
        "explain_vs_predict_rowwise": _spread(row_pairs),
        "explain_vs_predict_batch": _spread(batch_pairs),
        "sql_explain_rowwise_vs_shap_rowwise": per_row(db["explain_rowwise"]) / shap["shap_rowwise"]["median"],
        "sql_explain_batch_vs_shap_batch": per_row(db["explain_batch"]) / shap["shap_batch"]["median"],
        "core_rowwise_vs_shap_rowwise": shap["core_rowwise"]["median"] / shap["shap_rowwise"]["median"],
        "core_batch_vs_shap_batch": shap["core_batch"]["median"] / shap["shap_batch"]["median"],
        "training_with_vs_without_explainer": training["with_explainer_s"]["median"]
                                               / training["without_explainer_s"]["median"],
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    results = run(args)
    r, db, local = results["ratio"], results["sql"], results["in_process"]["per_row_s"]
    us = lambda s: f"{s * 1e6:,.1f} µs"  # noqa: E731
    print(f"{'figure':48} {'median':>10}  spread")
    for name in ("explain_vs_predict_rowwise", "explain_vs_predict_batch"):
        print(f"{name:48} {r[name]['median']:>10.2f}  {r[name]['min']:.2f}-{r[name]['max']:.2f}")
    for name in ("sql_explain_rowwise_vs_shap_rowwise", "sql_explain_batch_vs_shap_batch",
                 "core_rowwise_vs_shap_rowwise", "core_batch_vs_shap_batch", "training_with_vs_without_explainer"):
        print(f"{name:48} {r[name]:>10.2f}")
    for name, side in db.items():
        print(f"  {name:24} {us(side['wall_s']['median'] / args.rows)} per row")
    for name, side in local.items():
        print(f"  {name:24} {us(side['median'])} per row")
    print(f"  largest difference from shap: {results['in_process']['max_abs_difference_from_shap']:.2e}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
