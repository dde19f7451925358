"""pgmodels serve benchmark: request-response serving against the services a user would
otherwise run, with the same model, the same load generator and 16 concurrent clients
sending single-row requests (see benchmarks/README.md). Usage:

    .pgmodels/venv/bin/python benchmarks/bench_proxy.py --dsn "$(.pgmodels/venv/bin/pgmodels db url)"

Sides, each a server in its own processes, measured in turn and alternated:
  flask        (a) Flask's development server, the XGBoost model loaded from UBJ, features in the request
  fastapi_key  (b) FastAPI on uvicorn, the ONNX model in-process, features by key from PostgreSQL (psycopg pool)
  serve        (c) pgmodels serve, features in the request (one [1, 8] FP32 tensor)
  serve_key    (c) pgmodels serve, features by key ("parameters": {"keys": [k]})
  serve_grpc   (c) pgmodels serve over gRPC: ModelInfer with the same row (_grpc_load.py), reported
               against the HTTP side of the same server
"""

from __future__ import annotations

import argparse
import json
import os
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

import _data  # noqa: E402 - the helper modules live next to this script
import _db  # noqa: E402
import _report  # noqa: E402

SIDES = ["flask", "fastapi_key", "serve", "serve_key", "serve_grpc"]
ROLE = "pgmodels_bench_proxy"
COMMAND = ".pgmodels/venv/bin/python benchmarks/bench_proxy.py --dsn \"$(.pgmodels/venv/bin/pgmodels db url)\""


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", required=True, help="libpq URL of a database with the pgmodels extension (a superuser)")
    p.add_argument("--train-rows", type=int, default=100_000, help="rows the model is trained on (default 100000)")
    p.add_argument("--keys", type=int, default=10_000, help="rows of the feature table (default 10000)")
    p.add_argument("--trees", type=int, default=100, help="XGBoost trees, depth 6 (default 100)")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    p.add_argument("--seconds", type=float, default=10, help="measured seconds per run (default 10)")
    p.add_argument("--warmup", type=float, default=2, help="unmeasured seconds before each run (default 2)")
    p.add_argument("--repeat", type=int, default=3, help="runs per side, alternating the sides (default 3)")
    p.add_argument("--workers", type=int, default=2, help="worker processes of uvicorn servers (default 2)")
    p.add_argument("--out", help="write every raw number as JSON to this file")
    a = p.parse_args(argv)
    if a.train_rows < 20 or min(a.keys, a.trees, a.clients, a.repeat, a.workers) < 1 or a.seconds <= 0:
        p.error("sizes and counts must be positive (--train-rows at least 20)")
    return a


def _step(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(conn, args, workdir: Path) -> dict:
    """Data, the served model (train() as bench_lifecycle does), its feature source, a
    role with a token, and the baselines' model files."""
    data = _data.load(conn, args.train_rows, args.keys)
    conn.execute(f"DROP TABLE IF EXISTS {_data.table('features')}")
    conn.execute(f"CREATE TABLE {_data.table('features')} AS SELECT id, "
                 + ", ".join(f"features[{i + 1}] AS {f}" for i, f in enumerate(_data.FEATURES))
                 + f" FROM {_data.table('score')}")
    conn.execute(f"ALTER TABLE {_data.table('features')} ADD PRIMARY KEY (id)")
    trained = _db.train(conn, args.trees)
    conn.execute("SELECT register_feature_source(%s, %s, 'id')", [_db.PROJECT, _data.table("features")])
    if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [ROLE]).fetchone():
        conn.execute(f"CREATE ROLE {ROLE}")
    conn.execute(f"GRANT USAGE ON SCHEMA {_data.SCHEMA} TO {ROLE}")
    conn.execute(f"GRANT SELECT ON {_data.table('features')} TO {ROLE}")
    conn.execute("SELECT grant_project(%s, %s, 'predict')", [_db.PROJECT, ROLE])
    token = conn.execute("SELECT create_api_token(%s)", [ROLE]).fetchone()[0]
    onnx_path = workdir / "model.onnx"
    onnx_path.write_bytes(_db.export_onnx(conn))
    # the seed's model: the same recipe fitted in-process and saved in XGBoost's own format
    from xgboost import XGBClassifier

    from _inproc import _split

    X_fit, _, y_fit, _ = _split(data["X_train"], data["y_train"])  # train()'s own 75 % split (seed 42)
    native = XGBClassifier(n_estimators=args.trees, max_depth=6, random_state=0)
    native.fit(X_fit, y_fit)
    ubj_path = workdir / "model.ubj"
    native.save_model(ubj_path)
    return {"token": token, "onnx": onnx_path, "ubj": ubj_path, "X": data["X_score"], "model_id": trained["model_id"]}


def start_servers(args, prep: dict, workdir: Path) -> dict:
    py = sys.executable
    ports = {name: _free_port() for name in ("flask", "fastapi", "serve")}
    grpc_port = _free_port()
    logs = {name: (workdir / f"{name}.log").open("w") for name in ports}
    procs = {
        "flask": subprocess.Popen([py, str(HERE / "_proxy_flask.py"), str(prep["ubj"]), str(ports["flask"])],
                                  stdout=logs["flask"], stderr=subprocess.STDOUT, start_new_session=True),
        "fastapi": subprocess.Popen([py, str(HERE / "_proxy_fastapi.py"), str(prep["onnx"]), args.dsn,
                                     str(ports["fastapi"]), str(args.workers)],
                                    stdout=logs["fastapi"], stderr=subprocess.STDOUT, start_new_session=True),
        "serve": subprocess.Popen([str(Path(py).with_name("pgmodels")), "serve", "--dsn", args.dsn, "--port",
                                   str(ports["serve"]), "--grpc-port", str(grpc_port), "--workers", str(args.workers),
                                   "--log-level", "warning"],
                                  stdout=logs["serve"], stderr=subprocess.STDOUT, start_new_session=True),
    }
    base = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    for name, url in base.items():
        probe = url + ("/v2/health/ready" if name == "serve" else "/docs" if name == "fastapi" else "/")
        deadline = time.monotonic() + 120  # a loaded machine starts slowly
        while True:
            try:
                urllib.request.urlopen(probe, timeout=2)
                break
            except urllib.error.HTTPError as e:
                if e.code < 500:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or procs[name].poll() is not None:
                stop_servers(procs)
                raise RuntimeError(f"{name} did not start: {(workdir / f'{name}.log').read_text()[-2000:]}")
            time.sleep(0.3)
    return {"procs": procs, "base": base, "grpc": f"127.0.0.1:{grpc_port}"}


def stop_servers(procs: dict) -> None:
    for p in procs.values():
        try:
            os.killpg(p.pid, 15)
            p.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)


def requests_for(prep: dict, base: dict, key: int) -> dict:
    """(url, body, headers) of each HTTP side: the same row, by value or by key."""
    row = [float(v) for v in prep["X"][key]]
    auth = [f"authorization: Bearer {prep['token']}"]
    infer = f"{base['serve']}/v2/models/{_db.PROJECT}/infer"
    return {
        "flask": (f"{base['flask']}/predict", {"features": row}, []),
        "fastapi_key": (f"{base['fastapi']}/predict", {"key": key}, []),
        "serve": (infer, {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8], "data": [row]}],
                          "outputs": [{"name": "predict"}, {"name": "probabilities"}]}, auth),
        "serve_key": (infer, {"parameters": {"keys": [key]}, "outputs": [{"name": "predict"}, {"name": "probabilities"}]},
                      auth),
    }


def _post(url: str, body: dict, headers: list[str]) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json",
                                                                  **dict(h.split(": ", 1) for h in headers)})
    try:
        return json.loads(urllib.request.urlopen(req, timeout=30).read())
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{url} answered {e.code}: {e.read().decode(errors='replace')[:500]}") from None


def agreement(reqs: dict) -> dict:
    """Each side's probability of class 1 for the same row. The sides that run the served
    ONNX artifact must agree; Flask's model is the same recipe fitted again in-process and
    kept in XGBoost's own format (the database keeps only the converted model), so its
    probability is reported next to them, not required to match."""
    p1 = {}
    for side, (url, body, headers) in reqs.items():
        answer = _post(url, body, headers)
        if "outputs" in answer:
            answer = {o["name"]: o["data"] for o in answer["outputs"]}
        p1[side] = float(answer["probabilities"][1])
    served = [p1[side] for side in ("fastapi_key", "serve", "serve_key")]
    return {"p1": p1, "agree": max(served) - min(served) < 1e-5, "flask_difference": abs(p1["flask"] - served[0])}


def load(url: str, body: dict, headers: list[str], args) -> dict:
    if url.startswith("grpc://"):  # the gRPC side: the row of the serve side's body, the token of its header
        cmd = [sys.executable, str(HERE / "_grpc_load.py"), "--target", url[len("grpc://"):], "--model", _db.PROJECT,
               "--row=" + ",".join(map(repr, body["inputs"][0]["data"][0])),  # "=": a row may start with "-"
               "--token", headers[0].split("Bearer ", 1)[1]]
    else:
        cmd = [sys.executable, str(HERE / "_proxy_load.py"), "--url", url, "--body", json.dumps(body)]
        for h in headers:
            cmd += ["--header", h]
    cmd += ["--clients", str(args.clients), "--seconds", str(args.seconds), "--warmup", str(args.warmup)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds + args.warmup + 120)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def summarize(runs: dict) -> dict:
    out = {}
    for side, rs in runs.items():
        rps = [r["rps"] for r in rs]
        med = sorted(rs, key=lambda r: r["rps"])[(len(rs) - 1) // 2]
        out[side] = {"rps": statistics.median(rps), "rps_min": min(rps), "rps_max": max(rps),
                     "p50_ms": med["p50_ms"], "p99_ms": med["p99_ms"],
                     "p99_ms_all": [r["p99_ms"] for r in rs], "errors": sum(r["errors"] for r in rs)}
    s = out
    out["ratios"] = {"serve_vs_flask_rps": s["serve"]["rps"] / s["flask"]["rps"],
                     "serve_key_vs_fastapi_key_rps": s["serve_key"]["rps"] / s["fastapi_key"]["rps"],
                     "serve_grpc_vs_serve_rps": s["serve_grpc"]["rps"] / s["serve"]["rps"],
                     "targets": {"serve_vs_flask_rps": ">= 10", "serve_key_vs_fastapi_key_rps": ">= 1.2",
                                 "serve p99_ms": "<= 10"}}
    return out


def table(summary: dict) -> str:
    lines = ["| side | req/s (median) | req/s spread | p50 ms | p99 ms | errors |", "|---|---|---|---|---|---|"]
    for side in SIDES:
        s = summary[side]
        lines.append(f"| {side} | {s['rps']:.0f} | {s['rps_min']:.0f}-{s['rps_max']:.0f} | {s['p50_ms']:.2f} | "
                     f"{s['p99_ms']:.2f} | {s['errors']} |")
    r = summary["ratios"]
    lines.append(f"\nserve / flask req/s: {r['serve_vs_flask_rps']:.2f} (target >= 10); "
                 f"serve_key / fastapi_key req/s: {r['serve_key_vs_fastapi_key_rps']:.2f} (target >= 1.2); "
                 f"gRPC / HTTP (serve) req/s: {r['serve_grpc_vs_serve_rps']:.2f} (reported)")
    return "\n".join(lines)


def run(args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="pgmodels-bench-proxy-"))
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        _step(f"loading {args.train_rows} training rows and {args.keys} keyed rows; training the XGBoost model")
        prep = prepare(conn, args, workdir)
        meta = _report.meta(conn, argparse.Namespace(rows=args.keys, train_rows=args.train_rows, trees=args.trees,
                                                     repeat=args.repeat, cold_runs=0, chunk=0, dsn=args.dsn))
    meta["command"] = (f"{COMMAND} --train-rows {args.train_rows} --keys {args.keys} --trees {args.trees} "
                       f"--clients {args.clients} --seconds {args.seconds:g} --warmup {args.warmup:g} "
                       f"--repeat {args.repeat} --workers {args.workers}")
    _step("starting Flask, FastAPI and pgmodels serve")
    servers = start_servers(args, prep, workdir)
    try:
        reqs = requests_for(prep, servers["base"], key=min(42, args.keys - 1))
        check = agreement(reqs)
        reqs["serve_grpc"] = ("grpc://" + servers["grpc"],) + reqs["serve"][1:]
        runs = {side: [] for side in SIDES}
        for i in range(args.repeat):
            order = SIDES if i % 2 == 0 else list(reversed(SIDES))  # alternate, so drift hits every side
            for side in order:
                _step(f"run {i + 1}/{args.repeat}: {side}")
                runs[side].append(load(*reqs[side], args))
        meta["load_average_at_end"] = os.getloadavg()
    finally:
        stop_servers(servers["procs"])
    return {"meta": meta, "agreement": check, "runs": runs, "summary": summarize(runs), "workdir": str(workdir)}


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        results = run(args)
    except (psycopg.Error, RuntimeError) as e:
        print(f"bench_proxy: {e}", file=sys.stderr)
        return 1
    print(table(results["summary"]))
    print(f"predictions agree: {results['agreement']['agree']} {results['agreement']['p1']}")
    print(f"\nreproduce: {results['meta']['command']}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
