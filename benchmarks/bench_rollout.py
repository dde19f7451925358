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
- **proxy** (``--proxy``, the default): a real ``pgmodels serve`` (as bench_proxy.py starts
  it) under 16 concurrent clients (benchmarks/_proxy_load.py), each request an Open
  Inference Protocol infer of one row with its features and its own
  ``parameters.routing_key`` (a canary splits by key and records its answers), against
  each project in turn for --proxy-seconds, --proxy-repeat rounds; requests per second,
  p50 and p99;
- **shadow**: the same with the candidate in shadow: it costs the second model's
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
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_proxy  # noqa: E402 - its server helpers (next to this script)

COMMAND = ".pgmodels/venv/bin/python benchmarks/bench_rollout.py --dsn \"$(.pgmodels/venv/bin/pgmodels db url)\""
FEATURES = [f"f{i}" for i in range(8)]
ROLE = "pgmodels_bench_rollout"
KEY = "@routing_key@"  # the body's routing key, whose JSON text _proxy_load.py replaces by a new number


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", required=True, help="libpq URL of a database with the pgmodels extension")
    p.add_argument("--rows", type=int, default=20_000, help="rows scored per statement (default 20000)")
    p.add_argument("--trees", type=int, default=50, help="trees of each version (default 50)")
    p.add_argument("--fraction", type=float, default=0.05, help="the canary's fraction (default 0.05)")
    p.add_argument("--repeat", type=int, default=7, help="alternated repetitions (default 7)")
    p.add_argument("--proxy", action=argparse.BooleanOptionalAction, default=True,
                   help="measure pgmodels serve too (default on)")
    p.add_argument("--proxy-seconds", type=float, default=5, help="measured seconds of each proxy round (default 5)")
    p.add_argument("--proxy-warmup", type=float, default=1, help="unmeasured seconds before each round (default 1)")
    p.add_argument("--proxy-repeat", type=int, default=5, help="alternated proxy rounds (default 5)")
    p.add_argument("--clients", type=int, default=16, help="concurrent proxy clients (default 16)")
    p.add_argument("--workers", type=int, default=2, help="worker processes of pgmodels serve (default 2)")
    p.add_argument("--out", help="write every raw number to this JSON file")
    args = p.parse_args(argv)
    if min(args.rows, args.trees, args.repeat, args.proxy_repeat, args.clients, args.workers) < 1 \
            or args.proxy_seconds <= 0 or args.proxy_warmup < 0 or not 0 < args.fraction < 1:
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


def proxy_token(c) -> str:
    """A role that may predict with both projects, and its API token."""
    if not c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [ROLE]).fetchone():
        c.execute(f"CREATE ROLE {ROLE}")
    for project in ("bench_rollout_none", "bench_rollout_canary"):
        c.execute("SELECT grant_project(%s, %s, 'predict')", [project, ROLE])
    return c.execute("SELECT create_api_token(%s)", [ROLE]).fetchone()[0]


def start_serve(args, workdir: Path) -> tuple:
    """pgmodels serve as bench_proxy.start_servers starts it (HTTP only), once ready."""
    port = bench_proxy._free_port()
    log = workdir / "serve.log"
    proc = subprocess.Popen([str(Path(sys.executable).with_name("pgmodels")), "serve", "--dsn", args.dsn,
                             "--port", str(port), "--grpc-port", "0", "--workers", str(args.workers),
                             "--log-level", "warning"],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120  # a loaded machine starts slowly
    while True:
        try:
            urllib.request.urlopen(base + "/v2/health/ready", timeout=2)
            return proc, base
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            bench_proxy.stop_servers({"serve": proc})
            raise RuntimeError(f"pgmodels serve did not start: {log.read_text()[-2000:]}")
        time.sleep(0.3)


def proxy_load(url: str, body: dict, token: str, args) -> dict:
    """One round of _proxy_load.py, a new routing key in every request."""
    cmd = [sys.executable, str(HERE / "_proxy_load.py"), "--url", url, "--body", json.dumps(body),
           "--header", f"authorization: Bearer {token}", "--clients", str(args.clients),
           "--seconds", str(args.proxy_seconds), "--warmup", str(args.proxy_warmup),
           "--key-placeholder", json.dumps(KEY)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.proxy_seconds + args.proxy_warmup + 120)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
    run = json.loads(done.stdout)
    if run["errors"] or not run["requests"]:
        raise RuntimeError(f"{url}: {run['errors']} of {run['requests']} requests failed ({run['error_statuses']})")
    return run


def measure_proxy(c, base: str, token: str, args) -> dict:
    """Requests per second of one-row infer requests, each with its own routing key, the
    two projects alternated (and which goes first, too)."""
    row = [float(v) for v in c.execute("SELECT " + ", ".join(FEATURES) + " FROM bench_rollout_rows "
                                       "ORDER BY id LIMIT 1").fetchone()]
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8], "data": [row]}],
            "parameters": {"routing_key": KEY}, "outputs": [{"name": "predict"}]}
    url = {side: f"{base}/v2/models/bench_rollout_{side if side == 'none' else 'canary'}/infer"
           for side in ("none", "rollout")}
    for side in url:  # a valid answer (the placeholder swapped by hand) before any load
        bench_proxy._post(url[side], {**body, "parameters": {"routing_key": 0}},
                          [f"authorization: Bearer {token}"])
    runs = {"none": [], "rollout": []}
    for i in range(args.proxy_repeat):
        for side in (("none", "rollout") if i % 2 == 0 else ("rollout", "none")):
            runs[side].append(proxy_load(url[side], body, token, args))
    out = {f"{side}_{figure}": summary([r[figure] for r in runs[side]])
           for side in runs for figure in ("rps", "p50_ms", "p99_ms")}
    out["ratio"] = summary([r["rps"] / n["rps"] for r, n in zip(runs["rollout"], runs["none"])])
    out["requests"] = {side: sum(r["requests"] for r in rs) for side, rs in runs.items()}
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
        server = None
        try:
            if args.proxy:
                token = proxy_token(c)
                server = start_serve(args, Path(tempfile.mkdtemp(prefix="pgmodels-bench-rollout-")))
            canary = measure(c, args.repeat)
            if server:
                canary["proxy"] = measure_proxy(c, server[1], token, args)
            c.execute("SELECT alter_rollout(%s, NULL, 'shadow')", [rollout])
            shadow = measure(c, args.repeat)
            if server:
                shadow["proxy"] = measure_proxy(c, server[1], token, args)
        finally:
            if server:
                bench_proxy.stop_servers({"serve": server[0]})
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
        by_proxy = dict(c.execute("SELECT role, count(*) FROM pgmodels.rollout_predictions "
                                  "WHERE rollout_id = %s AND source = 'proxy' GROUP BY role", [rollout]).fetchall())
    results = {
        "command": COMMAND, "rows": args.rows, "trees": args.trees, "fraction": args.fraction,
        "repeat": args.repeat, "canary": canary, "shadow": shadow,
        "models_alone_s": {k: summary(v) for k, v in own.items()},
        "candidate_over_champion": statistics.median(c2 / c1 for c1, c2 in zip(own["champion"], own["candidate"])),
        "recorded_answers": recorded, "recorded_by_proxy": by_proxy,
    }
    if args.proxy:  # the answers the canary (both groups) and the shadow recorded through the proxy
        canary["proxy"]["recorded_answers"] = by_proxy.get("canary", 0) + by_proxy.get("champion", 0)
        shadow["proxy"]["recorded_answers"] = by_proxy.get("shadow", 0)
        results["proxy"] = {"clients": args.clients, "workers": args.workers, "seconds": args.proxy_seconds,
                            "warmup": args.proxy_warmup, "repeat": args.proxy_repeat}
    for mode in ("canary", "shadow"):
        for name, side in results[mode].items():
            r = side["ratio"]
            print(f"{mode:7s} {name:24s} {r['median']:.3f}x (spread {r['min']:.3f}-{r['max']:.3f})")
    print(f"candidate alone / champion alone: {results['candidate_over_champion']:.3f}x")
    for mode in ("canary", "shadow") if args.proxy else ():
        p = results[mode]["proxy"]
        print(f"{mode:7s} proxy req/s {p['none_rps']['median']:.0f} without a rollout, "
              f"{p['rollout_rps']['median']:.0f} with; p50 {p['none_p50_ms']['median']:.2f} / "
              f"{p['rollout_p50_ms']['median']:.2f} ms, p99 {p['none_p99_ms']['median']:.2f} / "
              f"{p['rollout_p99_ms']['median']:.2f} ms")
    print(f"answers recorded by the proxy: {by_proxy}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
