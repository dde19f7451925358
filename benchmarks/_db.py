"""The database side of each benchmark: the SQL a user would run, timed from the client.

Statements that scan the score table also return
``clock_timestamp() - statement_timestamp()`` computed after the last row, which is the
time the server spent on the statement without the client round trip ("server" below).
"""

from __future__ import annotations

import json
import statistics
import time

import psycopg
from psycopg import sql

from _data import SCHEMA, table

PROJECT = "bench_xgb"
WARMUP_PROJECT = "bench_warmup"
SERIAL_SETTING = 0
SERVER_ELAPSED = "extract(epoch FROM clock_timestamp() - statement_timestamp())::float8"


def _lit(value) -> str:
    return sql.Literal(value).as_string(None)


def train_sql(project: str, relation: str, trees: int) -> str:
    params = json.dumps({"n_estimators": trees, "max_depth": 6})
    return (f"SELECT model_id, runtime, metrics FROM train({_lit(project)}, task => 'classification', "
            f"relation_name => {_lit(relation)}, y_column_name => 'label', algorithm => 'xgboost', "
            f"hyperparams => {_lit(params)}, test_size => 0.25, test_sampling => 'stratified')")


def warm_up_training(conn: psycopg.Connection) -> None:
    """A tiny train() so the backend has imported xgboost, scikit-learn and skl2onnx."""
    conn.execute(train_sql(WARMUP_PROJECT, table("warmup"), 2)).fetchall()


def train(conn: psycopg.Connection, trees: int) -> dict:
    """One timed train() on train_data; the new version is deployed for the scoring benchmarks."""
    statement = train_sql(PROJECT, table("train_data"), trees)
    start = time.perf_counter()
    model_id, runtime, metrics = conn.execute(statement).fetchone()
    wall = time.perf_counter() - start
    # Later runs may not beat the deployed version; serve the one just trained.
    conn.execute("SELECT * FROM deploy(%s::bigint)", [model_id]).fetchall()
    return {"sql": statement, "wall_s": wall, "model_id": model_id, "runtime": runtime,
            "fit_time_s": metrics.get("fit_time"), "metrics": metrics}


def export_onnx(conn: psycopg.Connection) -> bytes:
    return bytes(conn.execute("SELECT export_onnx(%s)", [PROJECT]).fetchone()[0])


def timed_scan(conn: psycopg.Connection, statement: str, repeat: int) -> dict:
    """Median client wall and server time of a statement returning (value, server seconds)."""
    walls, servers, value = [], [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value, server = conn.execute(statement).fetchone()
        walls.append(time.perf_counter() - start)
        servers.append(server)
    return {"sql": statement, "wall_s": statistics.median(walls), "server_s": statistics.median(servers),
            "wall_all_s": walls, "value": float(value) if value is not None else None}


def workers_planned(conn: psycopg.Connection, statement: str) -> int:
    plan = conn.execute("EXPLAIN (FORMAT JSON) " + statement).fetchone()[0]
    return _find_workers(plan[0]["Plan"])


def _find_workers(node: dict) -> int:
    found = node.get("Workers Planned", 0)
    for child in node.get("Plans", []):
        found = max(found, _find_workers(child))
    return found


def rowwise_sql() -> str:
    return (f"SELECT sum(predict({_lit(PROJECT)}, features)), {SERVER_ELAPSED} "
            f"FROM {table('score')}")


def rowwise(conn: psycopg.Connection, rows: int, repeat: int) -> dict:
    """predict() once per row, in one backend (the caller has turned parallel query off)."""
    statement = rowwise_sql()
    conn.execute(f"SELECT predict({_lit(PROJECT)}, features) FROM {table('score')} LIMIT 1").fetchall()
    serial = timed_scan(conn, statement, repeat)
    breakdown = _breakdown(conn, repeat)
    for result in (serial, *breakdown.values()):
        result["per_row_us"] = result["wall_s"] / rows * 1e6
        result["per_row_server_us"] = result["server_s"] / rows * 1e6
    return {"serial": serial, "breakdown": breakdown,
            "workers_planned_by_default": default_workers_planned(conn, statement)}


def default_workers_planned(conn: psycopg.Connection, statement: str) -> int:
    """How many parallel workers the server's default settings would give the statement.

    Only EXPLAIN: the timed statements run serially, so that a row's cost compares with
    one in-process loop.
    """
    conn.execute("RESET max_parallel_workers_per_gather")
    try:
        return workers_planned(conn, statement)
    finally:
        conn.execute(f"SET max_parallel_workers_per_gather = {SERIAL_SETTING}")


def _breakdown(conn: psycopg.Connection, repeat: int) -> dict:
    """Where a row's time goes: the scan alone, and a PL/Python call that does nothing."""
    conn.execute(f"CREATE OR REPLACE FUNCTION {SCHEMA}.noop(features float8[]) RETURNS real "
                 "LANGUAGE plpython3u STABLE STRICT PARALLEL SAFE AS 'return 0.0'")
    scan = f"SELECT sum(cardinality(features)), {SERVER_ELAPSED} FROM {table('score')}"
    noop = (f"SELECT sum({SCHEMA}.noop(features::float8[])), {SERVER_ELAPSED} "
            f"FROM {table('score')}")
    return {"scan_only": timed_scan(conn, scan, repeat), "plpython_noop": timed_scan(conn, noop, repeat)}


def batch_statements(chunk: int) -> dict[str, str]:
    """The SQL forms of predict_batch a user could write, each summing the predictions."""
    p, score = _lit(PROJECT), table("score")
    return {
        "one_call_flat": (f"SELECT sum(p), {SERVER_ELAPSED} FROM predict_batch({p}, "
                          f"(SELECT array_agg(x) FROM {score}, unnest(features) x)) p"),
        "one_call_2d": (f"SELECT sum(p), {SERVER_ELAPSED} FROM predict_batch({p}, "
                        f"(SELECT array_agg(features) FROM {score})) p"),
        f"chunks_of_{chunk}_2d": (
            f"SELECT sum(r.p), {SERVER_ELAPSED} FROM (SELECT array_agg(id ORDER BY id) AS ids, "
            f"array_agg(features ORDER BY id) AS f FROM {score} GROUP BY id / {chunk}) c, "
            f"predict_batch({p}, c.f) WITH ORDINALITY AS r(p, n)"),
    }


def batch(conn: psycopg.Connection, rows: int, repeat: int, chunk: int) -> dict:
    """predict_batch() in each SQL form; the fastest one is the headline."""
    forms = {}
    for name, statement in batch_statements(chunk).items():
        result = timed_scan(conn, statement, repeat)
        result["rows_per_s"] = rows / result["wall_s"]
        forms[name] = result
    best = max(forms, key=lambda name: forms[name]["rows_per_s"])
    return {"forms": forms, "fastest_form": best}


def cold_start(dsn: str, probe: list[float], runs: int) -> dict:
    """The first predict() in brand-new backends: PL/Python start, imports, model load."""
    statement = (f"SELECT predict({_lit(PROJECT)}, ARRAY[{', '.join(map(repr, probe))}]::real[]), "
                 f"{SERVER_ELAPSED}")
    connects, firsts, servers, seconds = [], [], [], []
    for _ in range(runs):
        start = time.perf_counter()
        conn = psycopg.connect(dsn, autocommit=True)
        try:
            connected = time.perf_counter()
            _, server = conn.execute(statement).fetchone()
            done = time.perf_counter()
            conn.execute(statement).fetchone()
            seconds.append(time.perf_counter() - done)
        finally:
            conn.close()
        connects.append(connected - start)
        firsts.append(done - connected)
        servers.append(server)
    return {"sql": statement, "runs": runs, "connect_s": statistics.median(connects),
            "first_query_s": statistics.median(firsts), "first_query_server_s": statistics.median(servers),
            "second_query_s": statistics.median(seconds), "first_query_all_s": firsts}
