"""A tiny run of benchmarks/bench_proxy.py, so the harness cannot rot.

Nothing is timed: the test checks that every side served every request of its run without
an error (the gRPC side too), that the HTTP sides agree on the prediction, and that the
summary is complete.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_proxy.py"
TINY = ["--train-rows", "300", "--keys", "100", "--trees", "5", "--seconds", "0.5", "--warmup", "0.5",
        "--repeat", "1", "--clients", "4"]


def test_tiny_run_measures_every_side(test_db, tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--dsn", test_db, *TINY, "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["meta"]["command"].startswith(".pgmodels/venv/bin/python benchmarks/bench_proxy.py")
    assert "password" not in results["meta"]["dsn"]
    assert results["agreement"]["agree"], results["agreement"]
    summary = results["summary"]
    for side in ("flask", "fastapi_key", "serve", "serve_key", "serve_grpc"):
        runs = results["runs"][side]
        assert len(runs) == 1 and runs[0]["requests"] > 0 and runs[0]["errors"] == 0, runs
        assert summary[side]["rps"] > 0 and math.isfinite(summary[side]["p99_ms"])
    assert all(v > 0 for k, v in summary["ratios"].items() if k != "targets")
