"""Ratios, targets, the printed table and the run's metadata."""

from __future__ import annotations

import datetime
import os
import platform

from psycopg.conninfo import conninfo_to_dict, make_conninfo

COMMAND = ".pgmodels/venv/bin/python benchmarks/bench_lifecycle.py --dsn \"$(.pgmodels/venv/bin/pgmodels db url)\""


def redact(dsn: str) -> str:
    params = conninfo_to_dict(dsn)
    params.pop("password", None)
    return make_conninfo(**params)


def command(args) -> str:
    return (f"{COMMAND} --rows {args.rows} --train-rows {args.train_rows} --trees {args.trees} "
            f"--repeat {args.repeat} --cold-runs {args.cold_runs} --chunk {args.chunk}")


def meta(conn, args) -> dict:
    import numpy
    import onnxruntime
    import sklearn
    import xgboost

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command(args),
        "dsn": redact(args.dsn),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "server_version": conn.execute("SHOW server_version").fetchone()[0],
        "max_parallel_workers_per_gather_default": conn.execute(
            "SELECT reset_val FROM pg_settings WHERE name = 'max_parallel_workers_per_gather'").fetchone()[0],
        "python": platform.python_version(),
        "versions": {"numpy": numpy.__version__, "onnxruntime": onnxruntime.__version__,
                     "scikit-learn": sklearn.__version__, "xgboost": xgboost.__version__},
        "load_average_at_start": os.getloadavg(),
        "args": {k: v for k, v in vars(args).items() if k != "dsn"},
    }


def summarize(results: dict) -> list[dict]:
    """One line per benchmark: the ratio, its target and whether it is met."""
    t, r, b, c = (results[k] for k in ("training", "rowwise", "batch", "cold_start"))
    return [
        {"benchmark": "training", "pgmodels": f"{t['db']['wall_s']:.2f} s",
         "baseline": f"{t['baseline']['fetch_fit_convert_s']:.2f} s fetch+fit+to_onnx",
         "ratio": t["ratio"], "target": "<= 1.3", "met": t["ratio"] <= 1.3},
        {"benchmark": "row-wise predict", "pgmodels": f"{r['db']['serial']['per_row_us']:.1f} us/row",
         "baseline": f"{r['baseline']['per_row_us']:.1f} us/row ort loop",
         "ratio": r["ratio"], "target": "<= 1.3", "met": r["ratio"] <= 1.3},
        {"benchmark": "batch predict", "pgmodels": f"{b['db_rows_per_s']:,.0f} rows/s",
         "baseline": f"{b['baseline']['rows_per_s']:,.0f} rows/s ort batch",
         "ratio": b["ratio"], "target": ">= 0.5", "met": b["ratio"] >= 0.5},
        {"benchmark": "cold start", "pgmodels": f"{c['db']['first_query_s'] * 1000:.0f} ms first predict",
         "baseline": f"{c['baseline']['process_wall_s'] * 1000:.0f} ms python -c",
         "ratio": c["ratio"], "target": "<= 150 ms",
         "met": c["db"]["first_query_s"] <= 0.150},
    ]


def ratios(results: dict) -> None:
    """Add each section's ratio (pgmodels / baseline, rows/s the other way round)."""
    t = results["training"]
    t["ratio"] = t["db"]["wall_s"] / t["baseline"]["fetch_fit_convert_s"]
    t["ratio_vs_fetch_fit"] = t["db"]["wall_s"] / t["baseline"]["fetch_fit_s"]
    # Best of the repetitions on both sides: the ratio with the least neighbour noise.
    t["ratio_best_of_repeats"] = min(t["db"]["wall_all_s"]) / min(t["baseline"]["fetch_fit_convert_all_s"])
    if t["db"]["fit_time_s"]:
        t["ratio_fit_inside_vs_fit"] = t["db"]["fit_time_s"] / t["baseline"]["fit_s"]

    r = results["rowwise"]
    raw = r["baseline"]["per_row_us"]
    r["ratio"] = r["db"]["serial"]["per_row_us"] / raw
    r["ratio_server_time"] = r["db"]["serial"]["per_row_server_us"] / raw
    r["predictions_agree"] = r["db"]["serial"]["value"] == r["baseline"]["value"]
    # the ratio of each alternated pair, and their spread
    pairs = [d / b for d, b in zip(r["db"]["serial"].get("per_row_all_us", []), r["baseline"].get("per_row_all_us", []))]
    r["ratio_per_pair"] = pairs
    r["ratio_spread"] = [min(pairs), max(pairs)] if pairs else None

    b = results["batch"]
    forms = b["db"]["forms"]
    b["db_rows_per_s"] = forms[b["db"]["fastest_form"]]["rows_per_s"]
    b["ratio"] = b["db_rows_per_s"] / b["baseline"]["rows_per_s"]
    b["ratio_vs_single_thread"] = b["db_rows_per_s"] / b["baseline"]["single_thread"]["rows_per_s"]
    b["ratio_by_form"] = {name: f["rows_per_s"] / b["baseline"]["rows_per_s"] for name, f in forms.items()}
    b["predictions_agree"] = all(f["value"] == b["baseline"]["value"] for f in forms.values())

    c = results["cold_start"]
    c["ratio"] = c["db"]["first_query_s"] / c["baseline"]["process_wall_s"]
    c["ratio_connect_and_first_query"] = ((c["db"]["connect_s"] + c["db"]["first_query_s"])
                                          / c["baseline"]["process_wall_s"])


def table(summary: list[dict]) -> str:
    header = ("benchmark", "ratio", "target", "met", "pgmodels", "baseline")
    rows = [(s["benchmark"], f"{s['ratio']:.2f}", s["target"], "yes" if s["met"] else "NO",
             s["pgmodels"], s["baseline"]) for s in summary]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)) for line in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def details(results: dict) -> str:
    """The supporting numbers under the table: where the time goes."""
    r, b, c, t = (results[k] for k in ("rowwise", "batch", "cold_start", "training"))
    bd = r["db"]["breakdown"]
    lines = [
        f"row-wise, per row (server time): scan only {bd['scan_only']['per_row_server_us']:.2f} us, "
        f"PL/Python no-op call {bd['plpython_noop']['per_row_server_us']:.2f} us, "
        f"predict() {r['db']['serial']['per_row_server_us']:.2f} us, raw ort.run {r['baseline']['per_row_us']:.2f} us",
        "row-wise, alternated pairs (db / raw): " + ", ".join(f"{x:.2f}" for x in r.get("ratio_per_pair", []))
        + (f"; spread {r['ratio_spread'][0]:.2f}-{r['ratio_spread'][1]:.2f}" if r.get("ratio_spread") else ""),
        f"row-wise: measured with parallel query off; the default settings plan "
        f"{r['db']['workers_planned_by_default']} parallel worker(s) here",
        "batch forms (rows/s, ratio): " + ", ".join(
            f"{name} {f['rows_per_s']:,.0f} ({b['ratio_by_form'][name]:.2f})" for name, f in b["db"]["forms"].items())
        + f"; ort batch with 1 thread {b['baseline']['single_thread']['rows_per_s']:,.0f} rows/s, "
          f"ratio {b['ratio_vs_single_thread']:.2f}",
        f"cold start: connect {c['db']['connect_s'] * 1000:.0f} ms, first predict {c['db']['first_query_s'] * 1000:.0f} ms "
        f"(server {c['db']['first_query_server_s'] * 1000:.0f} ms), second {c['db']['second_query_s'] * 1000:.1f} ms; "
        f"python -c {c['baseline']['process_wall_s'] * 1000:.0f} ms (imports+session+run "
        f"{c['baseline']['import_session_run_s'] * 1000:.0f} ms)",
        f"training: train() {t['db']['wall_s']:.2f} s (fit inside {t['db']['fit_time_s'] or 0:.2f} s); baseline fetch "
        f"{t['baseline']['fetch_s']:.2f} s + fit {t['baseline']['fit_s']:.2f} s + to_onnx/verify "
        f"{t['baseline']['convert_s']:.2f} s; ratio vs fetch+fit only {t['ratio_vs_fetch_fit']:.2f}, "
        f"best of repeats {t['ratio_best_of_repeats']:.2f} (train() " + _seconds(t["db"]["wall_all_s"])
        + ", baseline " + _seconds(t["baseline"]["fetch_fit_convert_all_s"]) + ")",
        f"predictions agree with the baseline: row-wise {r['predictions_agree']}, batch {b['predictions_agree']}",
    ]
    return "\n".join(lines)


def _seconds(values: list[float]) -> str:
    return "/".join(f"{v:.2f}" for v in values) + " s"
