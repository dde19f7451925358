"""Serving behaviour: the per-backend cache, deploy visibility, parallel and read-only use,
cold imports, and pg_dump/pg_restore keeping every model."""

from __future__ import annotations

import subprocess
import threading
import time

import psycopg

from lifecycle_data import make_numeric
from onnx_models import scaled_sum


def import_model(conn, project, factor, deploy=True):
    return conn.execute("SELECT model_id FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression', deploy => %s)",
                        [project, scaled_sum(factor), deploy]).fetchone()[0]


def test_a_committed_deploy_is_seen_by_the_next_statement(conn, connect, name):
    import_model(conn, name, 1.0)
    second = import_model(conn, name, 10.0, deploy=False)
    reader = connect()
    assert reader.execute("SELECT predict(%s, ARRAY[1, 2])", [name]).fetchone()[0] == 3.0
    writer = connect(autocommit=False)
    writer.execute("SELECT * FROM deploy(%s::bigint)", [second])
    # not committed yet: the reader still gets the old model
    assert reader.execute("SELECT predict(%s, ARRAY[1, 2])", [name]).fetchone()[0] == 3.0
    writer.commit()
    assert reader.execute("SELECT predict(%s, ARRAY[1, 2])", [name]).fetchone()[0] == 30.0
    # and by id, any version, whatever is deployed
    assert reader.execute("SELECT predict(%s::bigint, ARRAY[1, 2])", [second]).fetchone()[0] == 30.0


def test_one_statement_never_mixes_two_versions(conn, connect, name):
    import_model(conn, name, 1.0)
    second = import_model(conn, name, 10.0, deploy=False)
    reader = connect()
    result = {}

    def slow_scoring():
        result["values"] = reader.execute(
            "SELECT array_agg(predict(%s, ARRAY[i, 0])) FROM generate_series(1, 40) i, "
            "LATERAL (SELECT pg_sleep(0.02)) s", [name]).fetchone()[0]

    t = threading.Thread(target=slow_scoring)
    t.start()
    time.sleep(0.3)
    conn.execute("SELECT * FROM deploy(%s::bigint)", [second])  # commits mid-statement
    t.join()
    ratios = {v / i for i, v in enumerate(result["values"], start=1)}
    assert ratios == {1.0}
    assert reader.execute("SELECT predict(%s, ARRAY[1, 0])", [name]).fetchone()[0] == 10.0


def test_predict_runs_in_parallel_workers_and_on_read_only_transactions(conn, connect, name):
    make_numeric(conn, name, rows=300)
    conn.execute("SELECT * FROM train(%s, 'classification', %s, 'y', algorithm => 'xgboost', "
                 "hyperparams => '{\"n_estimators\": 10}')", [name, name])
    conn.execute(f"CREATE TABLE {name}_big AS SELECT a, b, c, d FROM {name}, generate_series(1, 20)")
    c = connect()
    for setting in ("max_parallel_workers_per_gather = 2", "parallel_setup_cost = 0", "parallel_tuple_cost = 0",
                    "min_parallel_table_scan_size = 0", "parallel_leader_participation = off"):
        c.execute(f"SET {setting}")
    query = f"SELECT sum(predict(%s, ARRAY[a, b, c, d])) FROM {name}_big"
    plan = "\n".join(r[0] for r in c.execute("EXPLAIN (ANALYZE, COSTS OFF) " + query, [name]))
    assert "Workers Launched: 2" in plan, plan
    parallel = c.execute(query, [name]).fetchone()[0]
    c.execute("SET max_parallel_workers_per_gather = 0")
    assert c.execute(query, [name]).fetchone()[0] == parallel
    c.execute("SET default_transaction_read_only = on")
    c.execute("BEGIN READ ONLY")
    assert c.execute(query, [name]).fetchone()[0] == parallel
    c.execute("COMMIT")


def test_predict_imports_no_training_libraries(conn, connect, name):
    import_model(conn, name, 2.0)
    c = connect()
    assert c.execute("SELECT predict(%s, ARRAY[1, 1])", [name]).fetchone()[0] == 4.0
    loaded = []
    c.add_notice_handler(lambda d: loaded.append(d.message_primary))
    c.execute("""DO $$ import sys; plpy.notice(','.join(sorted(m for m in ('sklearn', 'xgboost', 'skl2onnx', 'onnxruntime')
                                                       if m in sys.modules))) $$ LANGUAGE plpython3u""")
    assert loaded == ["onnxruntime"]


def test_pg_dump_and_restore_keep_every_model(conn, cluster, name):
    import_model(conn, name, 3.0)
    import_model(conn, name, 5.0, deploy=False)
    restored = name + "_restored"
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {restored}")
    try:
        bindir = "/usr/lib/postgresql/15/bin"
        dump = subprocess.run([f"{bindir}/pg_dump", "-Fc", cluster.url(conn.info.dbname)], capture_output=True, check=True)
        subprocess.run([f"{bindir}/pg_restore", "--no-owner", "-d", cluster.url(restored)], input=dump.stdout,
                       capture_output=True, check=True)
        with psycopg.connect(cluster.url(restored), autocommit=True) as c:
            assert c.execute("SELECT predict(%s, ARRAY[1, 1])", [name]).fetchone()[0] == 6.0
            assert c.execute("SELECT count(*) FROM pgmodels.overview WHERE project = %s", [name]).fetchone()[0] == 2
            # the sequences came along too: a new version does not collide
            assert import_model(c, name, 7.0) > 0
    finally:
        with psycopg.connect(cluster.url("postgres"), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {restored} WITH (FORCE)")
