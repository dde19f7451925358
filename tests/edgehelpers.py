"""Helpers of the edge tests: projects trained once per module, bundles, the JS runners."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JS = ROOT / "edge" / "js"
N_TRAIN, N_EVAL = 3000, 1000

# name: (task, algorithm, features view over edge_data)
MODELS = {
    "edge_lin": ("classification", "linear", "x1, x2, x3, x4, label"),
    "edge_xgb": ("regression", "xgboost", "x1, x2, x3, x4, value"),
    "edge_txt": ("classification", "xgboost", "x1, x2, kind, label"),
    "edge_txt_reg": ("regression", "linear", "x1, kind, value"),
}
TARGET = {"classification": "label", "regression": "value"}


def make_data(conn) -> None:
    """edge_data (training) and edge_eval (1,000 rows scored by every runtime): the same
    generator, different rows."""
    for table, n, seed in (("edge_data", N_TRAIN, 0.1), ("edge_eval", N_EVAL, 0.7)):
        conn.execute(f"SELECT setseed({seed})")
        conn.execute(f"""
            CREATE TABLE {table} AS
            SELECT x1, x2, x3, x4, kind,
                   CASE WHEN x1 + x2 + CASE kind WHEN 'a' THEN 1 WHEN 'b' THEN -1 ELSE 0 END > 0.5 THEN 'leave'
                        WHEN x3 > 0.8 THEN 'maybe' ELSE 'stay' END AS label,
                   (3 * x1 - 2 * x2 + x3 * x4 + CASE kind WHEN 'a' THEN 2 WHEN 'b' THEN -1 ELSE 0.5 END)::real AS value
            FROM (SELECT (random() * 4 - 2)::real x1, (random() * 4 - 2)::real x2, (random() * 2)::real x3,
                         (random() * 3)::real x4, (ARRAY['a', 'b', 'c', 'd'])[1 + floor(random() * 4)::int] kind
                  FROM generate_series(1, {n})) s""")


def train_all(conn) -> dict:
    """Every model of MODELS trained and deployed: name -> model id."""
    ids = {}
    for name, (task, algorithm, columns) in MODELS.items():
        conn.execute(f"CREATE VIEW {name}_v AS SELECT {columns} FROM edge_data")
        conn.execute(f"CREATE VIEW {name}_e AS SELECT {columns} FROM edge_eval")
        ids[name] = conn.execute(
            "SELECT model_id FROM train(%s, %s, %s, %s, %s)",
            [name, task, f"{name}_v", TARGET[task], algorithm]).fetchone()[0]
    return ids


def eval_rows(conn, name: str) -> list[dict]:
    target = TARGET[MODELS[name][0]]
    return [{k: v for k, v in r[0].items() if k != target}
            for r in conn.execute(f"SELECT to_jsonb(e) FROM {name}_e e ORDER BY e::text").fetchall()]


def sql_answers(conn, name: str) -> dict:
    task = MODELS[name][0]
    cols = "predict(%(p)s, e)" + (", predict_label(%(p)s, e), predict_proba(%(p)s, e)"
                                  if task == "classification" else "")
    rows = conn.execute(f"SELECT {cols} FROM {name}_e e ORDER BY e::text", {"p": name}).fetchall()
    out = {"predict": [r[0] for r in rows]}
    if task == "classification":
        out["label"] = [r[1] for r in rows]
        out["proba"] = [r[2] for r in rows]
    return out


def bundle(conn, name: str, model_id=None) -> bytes:
    return bytes(conn.execute("SELECT export_bundle(%s, %s)", [name, model_id]).fetchone()[0])


def assert_same(got: dict, want: dict, tol: float = 1e-5) -> None:
    assert len(got["predict"]) == len(want["predict"]) == N_EVAL
    for g, w in zip(got["predict"], want["predict"]):
        assert abs(g - w) <= tol * max(1.0, abs(w)), (g, w)
    if "label" in want:
        assert got["label"] == want["label"]
        worst = max(abs(a - b) for g, w in zip(got["proba"], want["proba"]) for a, b in zip(g, w))
        assert worst <= tol, worst


def node(*args: str, env: dict | None = None, timeout: float = 300) -> dict:
    import os

    run = subprocess.run(["node", *args], cwd=JS, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, **(env or {})})
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


class StaticServer:
    """edge/js (the module, node_modules) and a data directory over HTTP on a free port."""

    def __init__(self, data_dir: Path):
        data_dir = Path(data_dir)

        class Handler(http.server.SimpleHTTPRequestHandler):
            extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                              ".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm"}

            def translate_path(self, path):
                if path.startswith("/data/"):
                    return str(data_dir / Path(path.split("?")[0]).name)
                return super().translate_path(path)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(JS)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
