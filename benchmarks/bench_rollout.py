"""pgmodels rollout benchmark: what a canary and a shadow add to scoring, against the same
scoring without a rollout, in the same run.

Two projects on the same table (8 float features, a binary target), each with the same
two versions (XGBoost, the deployed champion, and a random forest candidate): one without
a rollout, one with a canary at --fraction (then a shadow). Each figure alternates the
two sides in every repetition (a noisy neighbour hurts both alike) and keeps the median
and the spread:

- **predict per row**: ``predict(project, features)`` over every row of the table in one
  statement (no key: a canary draws at random, records nothing);
- **predict per row by key**: ``predict(project, features, key => id)`` (a canary records
  its answers and the control group's);
- **batch job**: ``CALL run_batch_job()`` over the table (keyed by id, chunks of 10,000);
- **shadow**: the same three with the candidate in shadow: it costs the second model's
  scoring and the recording of both answers; the candidate's own cost (predict by model
  id) is measured beside it.

Targets (issue #27): a canary adds at most 5 % to predict per row, to a batch job and to
the proxy; shadow at most the second model's scoring.

Usage:

    .pgmodels/venv/bin/python benchmarks/bench_rollout.py --dsn "$(.pgmodels/venv/bin/pgmodels db url)"
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import psycopg

COMMAND = ".pgmodels/venv/bin/python benchmarks/bench_rollout.py --dsn \"$(.pgmodels/venv/bin/pgmodels db url)\""
FEATURES = [f"f{i}" for i in range(8)]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", required=True, help="libpq URL of a database with the pgmodels extension")
    p.add_argument("--rows", type=int, default=20_000, help="rows scored per statement (default 20000)")
    p.add_argument("--trees", type=int, default=50, help="trees of each version (default 50)")
    p.add_argument("--fraction", type=float, default=0.05, help="the canary's fraction (default 0.05)")
    p.add_argument("--repeat", type=int, default=7, help="alternated repetitions (default 7)")
    p.add_argument("--out", help="write every raw number to this JSON file")
    args = p.parse_args(argv)
    if min(args.rows, args.trees, args.repeat) < 1 or not 0 < args.fraction < 1:
        p.error("sizes must be positive and the fraction between 0 and 1")
    return args


def setup(c, rows: int, trees: int):
    c.execute("DROP TABLE IF EXISTS bench_rollout_rows CASCADE")
    cols = ", ".join(f"(random() * 4 - 2)::real AS {f}" for f in FEATURES)
    c.execute(f"CREATE TABLE bench_rollout_rows AS SELECT i AS id, {cols}, 0 AS label "
              f"FROM generate_series(1, {rows}) i")
    c.execute("UPDATE bench_rollout_rows SET label = (f0 + f1 * f2 - f3 > 0)::int")
    c.execute("ALTER TABLE bench_rollout_rows ADD PRIMARY KEY (id)")
    c.execute("CREATE OR REPLACE VIEW bench_rollout_train AS SELECT " + ", ".join(FEATURES) + ", label "
              "FROM bench_rollout_rows")
    ids = {}
    for project in ("bench_rollout_none", "bench_rollout_canary"):
        c.execute("SELECT abort_rollout(id) FROM pgmodels.rollouts WHERE project = %s AND status = 'active'", [project])
        champion = c.execute(
            "SELECT (train(%s, 'classification', 'bench_rollout_train', 'label', algorithm => 'xgboost', "
            "hyperparams => %s::jsonb)).model_id", [project, json.dumps({"n_estimators": trees, "max_depth": 6})]
        ).fetchone()[0]
        c.execute("SELECT deploy(%s::bigint)", [champion])
        candidate = c.execute(
            "SELECT (train(%s, 'classification', 'bench_rollout_train', 'label', algorithm => 'random_forest', "
            "hyperparams => %s::jsonb, automatic_deploy => false)).model_id",
            [project, json.dumps({"n_estimators": trees, "max_depth": 6})]).fetchone()[0]
        ids[project] = (champion, candidate)
    for project in ids:
        c.execute(f"DROP TABLE IF EXISTS {project}_out")
        c.execute("DELETE FROM pgmodels.batch_job WHERE name = %s", [project])
        c.execute("SELECT create_batch_job(%s, %s, 'bench_rollout_rows', 'id', %s)", [project, project, f"{project}_out"])
    return ids


def timed(c, statement: str, params=None) -> float:
    started = time.perf_counter()
    c.execute(statement, params)
    return time.perf_counter() - started


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "all": values}


def measure(c, repeat: int, with_shadow_candidate: bool = False) -> dict:
    features = "ARRAY[" + ", ".join(FEATURES) + "]"
    sides = {
        "predict_per_row": "SELECT count(predict(%s, " + features + ")) FROM bench_rollout_rows",
        "predict_per_row_by_key": "SELECT count(predict(%s, " + features + ", key => id)) FROM bench_rollout_rows",
        "batch_job": "CALL run_batch_job(%s)",
    }
    out = {}
    for name, statement in sides.items():
        times = {"none": [], "rollout": []}
        for _ in range(repeat):
            times["none"].append(timed(c, statement, ["bench_rollout_none"]))
            times["rollout"].append(timed(c, statement, ["bench_rollout_canary"]))
            c.execute("SELECT pgmodels._rollout_flush()")
        ratios = [r / n for r, n in zip(times["rollout"], times["none"])]
        out[name] = {"none_s": summary(times["none"]), "rollout_s": summary(times["rollout"]),
                     "ratio": summary(ratios)}
    return out


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    with psycopg.connect(args.dsn, autocommit=True) as c:
        c.execute("SET client_min_messages = warning")
        ids = setup(c, args.rows, args.trees)
        champion, candidate = ids["bench_rollout_canary"]
        for _ in range(2):  # warm both backends' caches
            measure(c, 1)
        rollout = c.execute("SELECT start_rollout('bench_rollout_canary', %s::bigint, 'canary', %s::real)",
                            [candidate, args.fraction]).fetchone()[0]
        canary = measure(c, args.repeat)
        c.execute("SELECT alter_rollout(%s, NULL, 'shadow')", [rollout])
        shadow = measure(c, args.repeat)
        # the candidate's own scoring, beside the champion's, for the shadow's yardstick
        features = "ARRAY[" + ", ".join(FEATURES) + "]"
        own = {"champion": [], "candidate": []}
        for _ in range(args.repeat):
            for side, model in (("champion", champion), ("candidate", candidate)):
                own[side].append(timed(c, f"SELECT count(predict(%s::bigint, {features})) FROM bench_rollout_rows",
                                       [model]))
        c.execute("SELECT abort_rollout(%s)", [rollout])
        recorded = c.execute("SELECT count(*) FROM pgmodels.rollout_predictions WHERE rollout_id = %s",
                             [rollout]).fetchone()[0]
    results = {
        "command": COMMAND, "rows": args.rows, "trees": args.trees, "fraction": args.fraction,
        "repeat": args.repeat, "canary": canary, "shadow": shadow,
        "models_alone_s": {k: summary(v) for k, v in own.items()},
        "candidate_over_champion": statistics.median(c2 / c1 for c1, c2 in zip(own["champion"], own["candidate"])),
        "recorded_answers": recorded,
    }
    for mode in ("canary", "shadow"):
        for name, side in results[mode].items():
            r = side["ratio"]
            print(f"{mode:7s} {name:24s} {r['median']:.3f}x (spread {r['min']:.3f}-{r['max']:.3f})")
    print(f"candidate alone / champion alone: {results['candidate_over_champion']:.3f}x")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
