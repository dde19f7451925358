"""A tiny run of benchmarks/bench_lifecycle.py, so the harness cannot rot.

Sizes are far too small for the numbers to mean anything, so nothing here is timed:
the test checks that every section is measured, every ratio is computed, and the
database and the in-process baselines agree on the predictions.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_lifecycle.py"
TINY = ["--rows", "300", "--train-rows", "300", "--trees", "5", "--repeat", "1", "--cold-runs", "2",
        "--chunk", "100"]


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_tiny_run_measures_every_section(test_db, tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--dsn", test_db, *TINY, "--out", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "row-wise predict" in done.stdout
    results = json.loads(out.read_text())

    assert "password" not in results["meta"]["dsn"]
    assert results["meta"]["command"].startswith(".pgmodels/venv/bin/python benchmarks/bench_lifecycle.py")

    training = results["training"]
    assert training["db"]["runtime"] == "onnx"
    assert training["baseline"]["train_rows"] == 225  # train() fits on the 75 % training split too
    for value in (training["db"]["wall_s"], training["baseline"]["fit_s"],
                  training["baseline"]["fetch_fit_convert_s"], training["ratio"], training["ratio_vs_fetch_fit"],
                  training["ratio_best_of_repeats"]):
        assert _positive(value)

    rowwise = results["rowwise"]
    for value in (rowwise["db"]["serial"]["per_row_us"], rowwise["db"]["serial"]["per_row_server_us"],
                  rowwise["db"]["breakdown"]["plpython_noop"]["per_row_us"], rowwise["baseline"]["per_row_us"],
                  rowwise["ratio"]):
        assert _positive(value)
    assert rowwise["db"]["workers_planned_by_default"] >= 0
    assert rowwise["predictions_agree"], (rowwise["db"]["serial"]["value"], rowwise["baseline"]["value"])

    batch = results["batch"]
    assert set(batch["db"]["forms"]) == {"one_call_flat", "one_call_2d", "chunks_of_100_2d"}
    assert batch["db"]["fastest_form"] in batch["db"]["forms"]
    assert all(_positive(r) for r in batch["ratio_by_form"].values())
    assert _positive(batch["baseline"]["rows_per_s"]) and _positive(batch["ratio"])
    assert _positive(batch["baseline"]["single_thread"]["rows_per_s"]) and _positive(batch["ratio_vs_single_thread"])
    assert batch["predictions_agree"]

    cold = results["cold_start"]
    for value in (cold["db"]["connect_s"], cold["db"]["first_query_s"], cold["baseline"]["process_wall_s"],
                  cold["baseline"]["import_session_run_s"], cold["ratio"]):
        assert _positive(value)

    assert [s["benchmark"] for s in results["summary"]] == ["training", "row-wise predict", "batch predict",
                                                            "cold start"]
    assert all(_positive(s["ratio"]) and isinstance(s["met"], bool) for s in results["summary"])


def test_tiny_batch_run_measures_every_side(test_db, tmp_path):
    """benchmarks/bench_batch.py at a tiny size: every side measured, the same predictions."""
    out = tmp_path / "batch.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_batch.py"), "--dsn", test_db,
                           "--rows", "2000", "--train-rows", "300", "--trees", "5", "--repeat", "2",
                           "--chunk", "300", "--out", str(out)], capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert results["predictions_that_differ"] == 0
    assert results["incremental"]["rows"] == 20
    for key in ("job", "script", "limit"):
        assert _positive(results[key]["median_s"]) and _positive(results[key]["rows_per_s"])
    assert all(_positive(v) for v in (results["ratios"]["job_vs_script"], results["ratios"]["job_vs_limit"],
                                      results["ratios"]["incremental_fraction"]))
    assert results["meta"]["command"].startswith(".pgmodels/venv/bin/python benchmarks/bench_batch.py")


def test_tiny_stream_run_measures_every_figure(test_db, tmp_path):
    """benchmarks/bench_stream.py at a tiny size: real workers, every figure measured, nothing lost."""
    out = tmp_path / "stream.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_stream.py"), "--dsn", test_db,
                           "--seconds", "2", "--warmup", "0.5", "--events", "1000", "--repeat", "1", "--producers", "2",
                           "--steps", "1", "--latency-seconds", "2", "--latency-rate", "500", "--cost-seconds", "1",
                           "--train-rows", "300", "--trees", "5", "--out", str(out)],
                          capture_output=True, text=True, timeout=150, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert results["meta"]["command"].startswith(".pgmodels/venv/bin/python benchmarks/bench_stream.py")
    assert "password" not in results["meta"]["dsn"]
    flat = results["sustained"]["runs"][0]
    assert _positive(flat["inserted_per_s"]) and all(_positive(v) for v in flat["per_consumer_per_s"].values())
    assert set(flat["lag_start"]) == set(flat["lag_end"]) == {"bench_stream_a", "bench_stream_b"}
    for consumer in results["latency"]["consumers"].values():
        assert consumer["events"] == consumer["expected"] > 0
        assert consumer["events_without_notification"] == 0 and consumer["listen"]["n"] == consumer["events"]
    assert _positive(results["latency"]["p99_ms"]) and _positive(results["latency"]["p50_ms"])
    baseline = results["baseline"]
    assert baseline["backlog"] == 1000 and _positive(baseline["ratio"])
    assert _positive(baseline["pgmodels_rows_per_s"]) and _positive(baseline["baseline_rows_per_s"])
    assert _positive(results["producer_cost"]["fraction"])
    checks = results["checks"]
    assert checks["exactly_once"], checks
    assert checks["baseline_compared"] == 1000 and checks["baseline_differ"] == 0
    assert [s["figure"] for s in results["summary"]][:2] == ["sustained events/s per consumer",
                                                             "latency p99 at steady rate"]
    import psycopg

    with psycopg.connect(test_db, autocommit=True) as conn:  # it cleaned up after itself
        assert conn.execute("SELECT count(*) FROM pgmodels.streams WHERE name = 'bench_stream'").fetchone()[0] == 0
    left = []  # and left no worker running
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"work" in argv and test_db.encode() in argv and any(a.startswith(b"bench_stream_") for a in argv):
            left.append(cmdline.parent.name)
    assert not left


def test_tiny_psycopg_run_measures_both_ways(test_db, tmp_path):
    """benchmarks/bench_psycopg.py at a tiny size: per row and one round trip, alternated, agreeing."""
    out = tmp_path / "psycopg.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_psycopg.py"), "--dsn", test_db,
                           "--rows", "20", "--repeat", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert results["command"].startswith(".pgmodels/venv/bin/python benchmarks/bench_psycopg.py")
    assert set(results["ways"]) == {"per_row", "predict_batch", "unnest"}
    for way in results["ways"].values():
        assert len(way["trials"]) == 2 and all(_positive(t) for t in way["trials"])
        assert way["min_s"] <= way["median_s"] <= way["max_s"]
    assert all(_positive(r) for r in results["ratios"].values())
    assert "per_row / predict_batch = " in done.stdout


def test_tiny_edge_run_measures_every_side(test_db, tmp_path):
    """benchmarks/bench_edge.py at a tiny size: every side measured, edge and SQL agree."""
    out = tmp_path / "edge.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_edge.py"), "--dsn", test_db,
                           "--calls", "20", "--repeat", "2", "--trees", "5", "--out", str(out)],
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert results["predictions_that_differ"] == 0
    assert results["meta"]["command"].startswith(".pgmodels/venv/bin/python benchmarks/bench_edge.py")
    assert "password" not in results["meta"]["dsn"]
    assert set(results["sides"]) == {"edge", "ort", "native", "sql", "http", "sync_304"}
    assert all(_positive(s["median_us"]) and len(s["per_trial_us"]) == 2 for s in results["sides"].values())
    assert results["ratios_to_edge"]["edge"] == 1.0 and results["bundle"]["model_onnx_bytes"] > 0


def test_tiny_drift_run_measures_both_sides(test_db, tmp_path):
    """benchmarks/bench_drift.py at a tiny size: both sides measured and agreeing."""
    out = tmp_path / "drift.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_drift.py"), "--dsn", test_db,
                           "--rows", "3000", "--train-rows", "500", "--repeat", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert results["meta"]["command"].startswith(".pgmodels/venv/bin/python benchmarks/bench_drift.py")
    assert results["statuses"]["f3"] == "drift" and len(results["statuses"]) == 9
    assert len(results["drift"]["all_s"]) == len(results["script"]["all_s"]) == 2
    assert _positive(results["ratio"]["drift_vs_script"])


def test_tiny_pgml_run_measures_every_side(cluster, tmp_path):
    """benchmarks/bench_pgml.py at a tiny size, in a database of its own: every side
    measured, the ratios computed, the predictions the same on every side."""
    from pgmlhelpers import fresh_database

    out = tmp_path / "pgml.json"
    with fresh_database(cluster, setup=None) as (url, _, _):
        done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_pgml.py"), "--dsn", url,
                               "--copies", "1", "--repeat", "2", "--trees", "3", "--out", str(out)],
                              capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert results["meta"]["command"].startswith(".pgmodels/venv/bin/python benchmarks/bench_pgml.py")
    assert results["meta"]["rows"] == 569 and results["predictions_agree"]
    assert set(results["sides"]) == {"pgml_predict_rowwise", "pgmodels_predict_rowwise", "pgml_predict_batch",
                                     "raw_rowwise", "raw_batch"}
    assert all(len(s["all_s"]) == 2 for s in results["sides"].values())
    assert all(_positive(v) for v in results["ratio"].values())


def test_tiny_pgbouncer_run_measures_both_sides(test_db, tmp_path):
    """benchmarks/bench_pgbouncer.py at a tiny size: pgbench through a real PgBouncer,
    predict and the lookup at each client count, alternated, no failed transaction."""
    out = tmp_path / "pgbouncer.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_pgbouncer.py"), "--dsn", test_db,
                           "--clients", "1,2", "--seconds", "1", "--repeat", "2", "--rows", "500", "--pool-size", "2",
                           "--out", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert results["command"].startswith(".pgmodels/venv/bin/python benchmarks/bench_pgbouncer.py")
    assert results["pgbouncer"].startswith("PgBouncer ") and isinstance(results["predict_of_row_1"], float)
    assert set(results["clients"]) == {"1", "2"}
    for entry in results["clients"].values():
        for side in ("predict", "lookup"):
            assert len(entry[side]["trials"]) == 2 and entry[side]["failed"] == 0
            assert 0 < entry[side]["min_tps"] <= entry[side]["median_tps"] <= entry[side]["max_tps"]
        assert _positive(entry["ratio"]) and len(entry["ratio_per_pair"]) == 2
    assert " 2 clients: predict " in done.stdout


def test_tiny_online_run_measures_both_sides(test_db, tmp_path):
    """benchmarks/bench_online.py at a tiny size: pgbench as a role granted predict, direct
    (prepared) and through a real PgBouncer, predict and the lookup at each client count,
    alternated, no failed transaction; the role it made is gone afterwards."""
    out = tmp_path / "online.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_online.py"), "--dsn", test_db,
                           "--clients", "1,2", "--seconds", "1", "--warmup", "1", "--repeat", "2", "--rows", "500",
                           "--pool-size", "2", "--out", str(out)], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert results["command"].startswith(".pgmodels/venv/bin/python benchmarks/bench_online.py")
    assert isinstance(results["predict_of_row_1"], float) and set(results["modes"]) == {"direct", "pgbouncer"}
    for mode in results["modes"].values():
        assert set(mode["clients"]) == {"1", "2"}
        for entry in mode["clients"].values():
            for side in ("predict", "lookup"):
                assert len(entry[side]["trials"]) == 2 and entry[side]["failed"] == 0
                assert 0 < entry[side]["min_tps"] <= entry[side]["median_tps"] <= entry[side]["max_tps"]
            assert _positive(entry["ratio"]) and len(entry["ratio_per_pair"]) == 2
    assert "pgbouncer   2 clients: predict " in done.stdout
    import psycopg

    with psycopg.connect(test_db) as c:
        assert c.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", [results["role"]]).fetchone()[0] == 0


def test_tiny_workers_run_measures_both_sides(test_db, tmp_path):
    """benchmarks/bench_workers.py at a tiny size: 1 and 2 stream workers (on two consumers,
    and on one consumer of two partitions), one batch run and two partition runs, every
    event and key once."""
    out = tmp_path / "workers.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_workers.py"), "--dsn", test_db,
                           "--events", "500", "--rows", "2000", "--repeat", "2", "--trees", "3", "--chunk", "500",
                           "--out", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert results["command"].startswith(".pgmodels/venv/bin/python benchmarks/bench_workers.py")
    assert results["stream"]["each_event_once"] is True and results["batch"]["every_key_once"] is True
    assert results["split"]["each_event_once"] is True
    for side in (results["stream"]["1_worker"], results["stream"]["2_workers"], results["split"]["1_worker"],
                 results["split"]["2_workers"], results["batch"]["1_run"], results["batch"]["2_runs"]):
        assert len(side["trials"]) == 2 and side["min"] <= side["median"] <= side["max"]
    assert _positive(results["stream"]["ratio"]) and _positive(results["split"]["ratio"])
    assert _positive(results["batch"]["ratio"])


def test_tiny_explain_run_measures_every_side(test_db, tmp_path):
    """benchmarks/bench_explain.py at a tiny size: every side measured and alternated,
    every ratio computed, and pgmodels' explainer agreeing with shap's on the same model."""
    out = tmp_path / "explain.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_explain.py"), "--dsn", test_db,
                           "--rows", "50", "--train-rows", "400", "--trees", "5", "--repeat", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert results["meta"]["command"].startswith(".pgmodels/venv/bin/python benchmarks/bench_explain.py")
    assert set(results["sql"]) == {"predict_rowwise", "explain_rowwise", "predict_batch", "explain_batch"}
    assert all(len(side["wall_s"]["all"]) == 2 for side in results["sql"].values())
    assert all(len(side["all"]) == 2 for side in results["in_process"]["per_row_s"].values())
    assert results["in_process"]["max_abs_difference_from_shap"] < 1e-4
    assert all(_positive(v if not isinstance(v, dict) else v["median"]) for v in results["ratio"].values())
    assert results["training"]["explainer_recorded"]["kind"] == "tree"


def test_tiny_rollout_run_measures_every_side(test_db, tmp_path):
    """benchmarks/bench_rollout.py at a tiny size: a canary and a shadow, each side alternated
    with the same scoring without a rollout, and the answers recorded."""
    out = tmp_path / "rollout.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_rollout.py"), "--dsn", test_db,
                           "--rows", "300", "--trees", "3", "--repeat", "2", "--proxy-seconds", "1",
                           "--proxy-warmup", "0.5", "--proxy-repeat", "2", "--workers", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert results["command"].startswith(".pgmodels/venv/bin/python benchmarks/bench_rollout.py")
    for mode in ("canary", "shadow"):
        assert set(results[mode]) == {"predict_per_row", "predict_per_row_by_key", "batch_job", "proxy"}
        for side in results[mode].values():
            assert len(side["ratio"]["all"]) == 2 and _positive(side["ratio"]["median"])
        proxy = results[mode]["proxy"]
        assert _positive(proxy["none_rps"]["median"]) and _positive(proxy["rollout_p99_ms"]["median"])
        assert proxy["recorded_answers"] > 0  # a new routing key per request: the canary splits and records
    assert results["recorded_answers"] > 2 * 300  # the shadow's two answers per row, at least
