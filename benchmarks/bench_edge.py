"""Edge: one row's prediction on the device against every other way to get it, in one run.

Sides, each timed per call for one row of four numeric features, alternating within each
trial (rotating which goes first) so drift on a shared machine hits them alike:

- ``edge``: pgmodels_edge's EdgeModel.predict(list) in-process (input checks included);
- ``ort``: a bare onnxruntime session on the bundle's model.onnx, a prebuilt [1, 4] array
  (the floor: what the runtime adds over onnxruntime);
- ``native``: the same algorithm and size trained in-process with XGBoost, predict() on a
  [1, 4] array (what an application embedding the training library would pay);
- ``sql``: ``SELECT predict(%s, %s::real[])`` over an open psycopg connection;
- ``http``: one Open Inference Protocol request to ``pgmodels serve`` (keep-alive client);
- ``sync_304``: a device's poll of the bundle URL when nothing changed (304).

Reported: per side the median per-call time over trials with the spread (min, max), and
each side's ratio to ``edge``; the bundle's size (zip and model.onnx); and each size
option's bytes before and after, largest difference and classes changed
(edge_bundle_options, checked on the training rows) for the benchmark's XGBoost model and
for an imported neural network (an MLP on the same rows), where float16 and int8 apply.
The edge and ort predictions must equal SQL's.

    .pgmodels/venv/bin/python benchmarks/bench_edge.py --dsn "$(.pgmodels/venv/bin/pgmodels db url)"
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg

PROJECT, TABLE = "bench_edge", "bench_edge_train"
COMMAND = ".pgmodels/venv/bin/python benchmarks/bench_edge.py --dsn \"$(.pgmodels/venv/bin/pgmodels db url)\""


def setup(conn, trees: int) -> list[list[float]]:
    conn.execute(f"DROP TABLE IF EXISTS {TABLE} CASCADE")
    conn.execute(f"""CREATE TABLE {TABLE} AS
                     SELECT (i % 17)::real AS a, ((i * 7) % 23)::real AS b, ((i * 3) % 11)::real AS c,
                            (i % 5)::real AS d, ((i % 17) + ((i * 7) % 23) > 20)::int AS y
                       FROM generate_series(1, 2000) AS i""")
    conn.execute("SET pgmodels.progress_level = 'off'")
    conn.execute("SELECT * FROM train(%s, 'classification', %s, 'y', 'xgboost', %s)",
                 [PROJECT, TABLE, json.dumps({"n_estimators": trees})]).fetchall()
    return [list(r) for r in conn.execute(f"SELECT a, b, c, d FROM {TABLE} ORDER BY random() LIMIT 200")]


def size_options(conn, train: np.ndarray) -> dict:
    """edge_bundle_options for the XGBoost model and an imported MLP, on the training rows."""
    import warnings

    from skl2onnx import to_onnx
    from sklearn.neural_network import MLPClassifier

    conn.execute(f"CREATE OR REPLACE VIEW {TABLE}_x AS SELECT a, b, c, d FROM {TABLE}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp = MLPClassifier((64, 64), max_iter=200, random_state=0).fit(train[:, :4], train[:, 4].astype(int))
    onx = to_onnx(mlp, train[:1, :4], options={id(mlp): {"zipmap": False}}, target_opset=17)
    conn.execute("SELECT * FROM import_onnx('bench_edge_mlp', %s, ARRAY['a', 'b', 'c', 'd'], 'classification', "
                 "'[0, 1]')", [onx.SerializeToString()]).fetchall()
    out = {}
    for project in (PROJECT, "bench_edge_mlp"):
        cols = ["option", "bytes", "bytes_before", "max_abs_diff", "classes_changed", "rows", "usable", "note"]
        out[project] = [dict(zip(cols, r)) for r in conn.execute(
            "SELECT * FROM edge_bundle_options(%s, %s::regclass)", [project, f"{TABLE}_x"])]
    return out


def start_server(dsn: str) -> tuple[subprocess.Popen, str]:
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).with_name("pgmodels")), "serve", "--dsn", dsn, "--port",
                               str(port), "--grpc-port", "0", "--workers", "1", "--log-level", "warning"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/v2/health/ready", timeout=2).status_code == 200:
                return server, base
        except httpx.HTTPError:
            pass
        if server.poll() is not None:
            break
        time.sleep(0.3)
    stop(server)
    raise SystemExit("pgmodels serve did not start")


def stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dsn", required=True)
    p.add_argument("--calls", type=int, default=2000, help="calls per side per trial")
    p.add_argument("--repeat", type=int, default=7, help="trials")
    p.add_argument("--trees", type=int, default=100)
    p.add_argument("--out", help="JSON results file (default benchmarks/results/edge-<date>.json)")
    args = p.parse_args(argv)

    import httpx
    import onnxruntime as ort
    import xgboost
    from pgmodels_edge import Device, EdgeModel

    conn = psycopg.connect(args.dsn, autocommit=True)
    rows = setup(conn, args.trees)
    data = bytes(conn.execute("SELECT export_bundle(%s)", [PROJECT]).fetchone()[0])
    key = conn.execute("SELECT edge_public_key()").fetchone()[0]
    edge = EdgeModel.from_bytes(data, key)
    import io
    import zipfile

    artifact = zipfile.ZipFile(io.BytesIO(data)).read("model.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(artifact, options, providers=["CPUExecutionProvider"])
    train = np.array(conn.execute(f"SELECT a, b, c, d, y FROM {TABLE}").fetchall(), dtype=np.float32)
    native = xgboost.XGBClassifier(n_estimators=args.trees, n_jobs=1).fit(train[:, :4], train[:, 4])
    arrays = [np.array([r], dtype=np.float32) for r in rows]

    sql_answers = [conn.execute("SELECT predict(%s, %s::real[])", [PROJECT, r]).fetchone()[0] for r in rows]
    differ = sum(edge.predict(r) != s for r, s in zip(rows, sql_answers))
    differ += sum(float(session.run(["label"], {"X": a})[0][0]) != s for a, s in zip(arrays, sql_answers))

    for role in ("bench_edge_device",):
        conn.execute(f"DO $$ BEGIN CREATE ROLE {role}; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    conn.execute("SELECT grant_project(%s, 'bench_edge_device', 'all')", [PROJECT])
    token = conn.execute("SELECT create_api_token('bench_edge_device')").fetchone()[0]
    server, base = start_server(args.dsn)
    home = tempfile.mkdtemp(prefix="bench-edge-")
    try:
        client = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30)
        device = Device(home, key, f"{base}/v2/models/{PROJECT}/bundle", token)
        assert device.sync().status == "updated"
        n = len(rows)

        def body(r):
            return {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [r]}]}
        bodies = [body(r) for r in rows]
        sides = {
            "edge": lambda i: edge.predict(rows[i % n]),
            "ort": lambda i: session.run(["label"], {"X": arrays[i % n]}),
            "native": lambda i: native.predict(arrays[i % n]),
            "sql": lambda i: conn.execute("SELECT predict(%s, %s::real[])", [PROJECT, rows[i % n]]).fetchone(),
            "http": lambda i: client.post(f"{base}/v2/models/{PROJECT}/infer", json=bodies[i % n]).raise_for_status(),
            "sync_304": lambda i: device.sync(),
        }
        assert device.sync().http_status == 304
        for fn in sides.values():  # warm-up
            for i in range(min(50, args.calls)):
                fn(i)
        times = {k: [] for k in sides}
        names = list(sides)
        for trial in range(args.repeat):
            order = names[trial % len(names):] + names[:trial % len(names)]
            for name in order:
                fn = sides[name]
                calls = args.calls if name not in ("http", "sync_304", "sql") else max(1, args.calls // 4)
                t = time.perf_counter()
                for i in range(calls):
                    fn(i)
                times[name].append((time.perf_counter() - t) / calls)
        client.close()
    finally:
        stop(server)
        import shutil

        shutil.rmtree(home, ignore_errors=True)

    sizes = size_options(conn, train)
    results = {"meta": {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": f"{COMMAND} --calls {args.calls} --repeat {args.repeat} --trees {args.trees}",
        "dsn": psycopg.conninfo.make_conninfo(**{k: v for k, v in psycopg.conninfo.conninfo_to_dict(args.dsn).items()
                                                 if k != "password"}),
        "cpus": os.cpu_count(), "python": platform.python_version(), "onnxruntime": ort.__version__,
        "xgboost": xgboost.__version__},
        "predictions_that_differ": differ,
        "bundle": {"zip_bytes": len(data), "model_onnx_bytes": len(artifact)},
        "size_options": sizes, "sides": {}, "ratios_to_edge": {}}
    edge_median = statistics.median(times["edge"])
    print(f"{'side':<9} {'median us':>10} {'min us':>9} {'max us':>9} {'x edge':>8}")
    for name, ts in times.items():
        med = statistics.median(ts)
        results["sides"][name] = {"median_us": med * 1e6, "min_us": min(ts) * 1e6, "max_us": max(ts) * 1e6,
                                  "per_trial_us": [t * 1e6 for t in ts]}
        results["ratios_to_edge"][name] = med / edge_median
        print(f"{name:<9} {med * 1e6:>10.1f} {min(ts) * 1e6:>9.1f} {max(ts) * 1e6:>9.1f} {med / edge_median:>8.2f}")
    print(f"bundle: {len(data)} bytes zipped, model.onnx {len(artifact)} bytes; predictions that differ: {differ}")
    for project, rows_ in sizes.items():
        for r in rows_:
            print(f"{project:<14} {r['option']:<8} " + (f"{r['bytes_before']} -> {r['bytes']} bytes, max diff "
                  f"{r['max_abs_diff']:.3g}, classes changed {r['classes_changed']}" if r["bytes"] else r["note"]))
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / (
        f"edge-{datetime.date.today().isoformat()}.json")
    out.write_text(json.dumps(results, indent=1))
    conn.close()
    return 0 if differ == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
