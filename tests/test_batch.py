"""Batch jobs: scoring a table into a prediction table by key, a chunk at a time,
incremental, resumable, never overlapping, retried. pg_cron schedules are in
test_batch_cron.py; bad input and privileges in test_batch_errors.py."""

from __future__ import annotations

import time

import pytest

from batchhelpers import block_key, call_in_background, make_project, runs
from dbhelpers import sql_error
from lifecycle_data import make_churn


def test_a_run_scores_every_key_once_as_predict_does(conn, name):
    src = make_project(conn, name, rows=2500)
    job_id = conn.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, outputs => ARRAY['prediction', "
                          "'probabilities', 'label'], chunk_rows => 700)",
                          [name, name, src, name + "_out"]).fetchone()[0]
    assert job_id > 0
    conn.execute("CALL run_batch_job(%s)", [name])
    [run] = runs(conn, name)
    assert (run["status"], run["mode"], run["rows_scored"], run["chunks"], run["triggered_by"]) == \
        ("succeeded", "full", 2500, 4, "manual")
    assert run["rows_per_second"] > 0 and run["error"] is None
    deployed = conn.execute("SELECT model_id, version FROM pgmodels.overview WHERE project = %s AND deployed",
                            [name]).fetchone()
    assert (run["model_id"], run["model_version"]) == deployed
    # one row per key, each the answer predict(), predict_proba() and predict_label() give
    mismatches = conn.execute(f"""
        SELECT count(*) FILTER (WHERE o.prediction IS DISTINCT FROM predict(%s, ARRAY[s.a, s.b, s.c, s.d])
                                   OR o.label IS DISTINCT FROM predict_label(%s, ARRAY[s.a, s.b, s.c, s.d])
                                   OR o.probabilities IS DISTINCT FROM predict_proba(%s, ARRAY[s.a, s.b, s.c, s.d])
                                   OR (o.model_id, o.model_version) IS DISTINCT FROM (%s, %s)
                                   OR o.run_id <> %s),
               count(*), count(DISTINCT o.id)
          FROM {src} s JOIN {name}_out o USING (id)""",
                              [name, name, name, *deployed, run["run_id"]]).fetchone()
    assert mismatches == (0, 2500, 2500)
    job = conn.execute("SELECT project, source, output, last_status, scored_model_id FROM pgmodels.batch_jobs "
                       "WHERE job = %s", [name]).fetchone()
    assert job == (name, src, name + "_out", "succeeded", deployed[0])


def test_text_and_boolean_features_score_like_predict(conn, name):
    make_churn(conn, name + "_data", 600)
    conn.execute("SELECT * FROM train(%s, 'classification', %s, 'churned', 'xgboost', "
                 "'{\"n_estimators\": 5}')", [name, name + "_data"])
    conn.execute(f"CREATE VIEW {name}_v AS SELECT row_number() OVER () AS cid, d.* FROM {name}_data d")
    conn.execute("SELECT create_batch_job(%s, %s, %s, 'cid', %s, outputs => ARRAY['label'], chunk_rows => 250)",
                 [name, name, name + "_v", name + "_out"])
    conn.execute("CALL run_batch_job(%s)", [name])
    bad = conn.execute(f"""SELECT count(*) FILTER (WHERE o.label IS DISTINCT FROM predict_label(%s, v)), count(*)
                             FROM {name}_v v JOIN {name}_out o USING (cid)""", [name]).fetchone()
    assert bad == (0, 600)


def test_incremental_runs_score_only_new_rows_until_a_new_deploy(conn, name):
    src = make_project(conn, name, rows=1000)
    out = name + "_out"
    conn.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, incremental_column => 'updated_at', "
                 "chunk_rows => 300)", [name, name, src, out])
    conn.execute("CALL run_batch_job(%s)", [name])
    conn.execute(f"UPDATE {src} SET a = a + 1, updated_at = '2027-01-01' WHERE id % 100 = 0")  # 10 rows
    conn.execute(f"INSERT INTO {src} SELECT 5000 + i, 1, 2, 3, 4, '2027-01-02' FROM generate_series(1, 5) i")
    conn.execute(f"DELETE FROM {src} WHERE id = 7")
    conn.execute("CALL run_batch_job(%s)", [name])
    first, second = runs(conn, name)
    assert (first["mode"], first["rows_scored"]) == ("full", 1000)
    assert (second["mode"], second["rows_scored"], second["rows_removed"]) == ("incremental", 15, 0)
    assert second["low_watermark"] == first["high_watermark"]
    assert conn.execute(f"SELECT count(*) FROM {out} WHERE run_id = %s", [second["run_id"]]).fetchone()[0] == 15
    assert conn.execute(f"SELECT count(*) FROM {out} WHERE id = 7").fetchone()[0] == 1  # gone on the next full run
    # nothing new: an empty incremental run
    conn.execute("CALL run_batch_job(%s)", [name])
    assert runs(conn, name)[-1]["rows_scored"] == 0
    # a new deploy: everything is rescored by the new model, and the key that left goes
    conn.execute("SELECT * FROM train(%s, algorithm => 'linear')", [name])
    conn.execute("SELECT * FROM deploy(%s, 'most_recent')", [name])
    new_model = conn.execute("SELECT model_id FROM pgmodels.overview WHERE project = %s AND deployed",
                             [name]).fetchone()[0]
    conn.execute("CALL run_batch_job(%s)", [name])
    last = runs(conn, name)[-1]
    assert (last["mode"], last["rows_scored"], last["rows_removed"], last["model_id"]) == ("full", 1004, 1, new_model)
    assert conn.execute(f"SELECT count(*), count(*) FILTER (WHERE model_id = %s) FROM {out}",
                        [new_model]).fetchone() == (1004, 1004)


def test_a_killed_run_is_resumed_and_scores_each_key_once(conn, connect, test_db, name):
    src = make_project(conn, name, rows=3000)
    out = name + "_out"
    conn.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, chunk_rows => 400)", [name, name, src, out])
    blocker = block_key(connect, out, 2100)  # in the sixth chunk
    thread, outcome = call_in_background(test_db, "CALL run_batch_job(%s)", [name])
    deadline = time.time() + 30
    while time.time() < deadline:  # the progress shows from this session while the run waits
        progress = runs(conn, name)
        if progress and progress[-1]["chunks"] == 5:
            break
        time.sleep(0.05)
    [running] = runs(conn, name)
    assert (running["status"], running["rows_scored"], running["cursor_key"]) == ("running", 2000, "2000")
    conn.execute("SELECT pg_terminate_backend(%s)", [running["pid"]])
    thread.join(10)
    assert "error" in outcome
    blocker.rollback()
    [killed] = runs(conn, name)
    assert killed["status"] == "failed" and "interrupted" in killed["error"]
    conn.execute("CALL run_batch_job(%s)", [name])
    killed, resumed = runs(conn, name)
    assert resumed["resumed_from"] == killed["run_id"] and resumed["status"] == "succeeded"
    assert killed["rows_scored"] + resumed["rows_scored"] == 3000  # none twice
    per_run = dict(conn.execute(f"SELECT run_id, count(*) FROM {out} GROUP BY run_id").fetchall())
    assert per_run == {killed["run_id"]: 2000, resumed["run_id"]: 1000}
    assert conn.execute(f"SELECT count(DISTINCT id), min(id), max(id) FROM {out}").fetchone() == (3000, 1, 3000)


def test_a_second_run_while_one_runs_is_skipped(conn, connect, test_db, name):
    src = make_project(conn, name, rows=900)
    out = name + "_out"
    conn.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, chunk_rows => 300)", [name, name, src, out])
    blocker = block_key(connect, out, 500)
    thread, outcome = call_in_background(test_db, "CALL run_batch_job(%s)", [name])
    deadline = time.time() + 30
    while time.time() < deadline and not (runs(conn, name) and runs(conn, name)[-1]["chunks"] == 1):
        time.sleep(0.05)
    started = time.time()
    conn.execute("CALL run_batch_job(%s)", [name])  # returns at once
    assert time.time() - started < 5
    blocker.rollback()
    thread.join(30)
    assert outcome.get("ok")
    first, skipped = runs(conn, name)
    assert (first["status"], first["rows_scored"]) == ("succeeded", 900)
    assert skipped["status"] == "skipped" and skipped["rows_scored"] == 0 and "still running" in skipped["error"]
    assert conn.execute("SELECT last_status FROM pgmodels.batch_jobs WHERE job = %s", [name]).fetchone() == \
        ("succeeded",)


def test_a_failed_run_is_retried_after_its_delay(conn, connect, test_db, name):
    src = make_project(conn, name, rows=600)
    out = name + "_out"
    conn.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, max_retries => 2, retry_delay => '2 seconds')",
                 [name, name, src, out])
    blocker = connect(autocommit=False)
    blocker.execute(f"LOCK TABLE {out} IN EXCLUSIVE MODE")  # the upsert waits, and times out
    thread, outcome = call_in_background(test_db, "CALL run_batch_job(%s)", [name], setup="SET lock_timeout = '300ms'")
    deadline = time.time() + 30
    while time.time() < deadline and not any(r["status"] == "failed" for r in runs(conn, name)):
        time.sleep(0.05)
    blocker.rollback()  # gone before the retry
    thread.join(30)
    assert outcome.get("ok"), outcome
    failed, retried = runs(conn, name)
    assert (failed["status"], failed["attempt"], failed["error_sqlstate"]) == ("failed", 1, "55P03")
    assert "lock" in failed["error"]
    assert (retried["status"], retried["attempt"], retried["rows_scored"]) == ("succeeded", 2, 600)


def test_errors_a_retry_cannot_mend_are_not_retried(conn, name):
    src = make_project(conn, name, rows=100)
    conn.execute(f"CREATE TABLE {name}_ctl AS SELECT 0::real AS d")
    conn.execute(f"CREATE VIEW {name}_v AS SELECT id, a / (SELECT d FROM {name}_ctl) AS a, b, c, d FROM {src}")
    conn.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, max_retries => 2, retry_delay => '5 seconds')",
                 [name, name, name + "_v", name + "_out"])
    started = time.time()
    err = sql_error(conn, "CALL run_batch_job(%s)", [name])
    assert err.sqlstate == "22012" and time.time() - started < 4
    assert [(r["status"], r["attempt"]) for r in runs(conn, name)] == [("failed", 1)]


def test_a_failed_run_records_the_error_and_keeps_the_committed_chunks(conn, name):
    src = make_project(conn, name, rows=1000)
    conn.execute(f"UPDATE {src} SET b = 'NaN' WHERE id = 650")
    conn.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, chunk_rows => 300, max_retries => 0)",
                 [name, name, src, name + "_out"])
    err = sql_error(conn, "CALL run_batch_job(%s)", [name])
    assert err.sqlstate == "22023" and '"b"' in err.diag.message_primary and "NaN" in err.diag.message_primary
    [run] = runs(conn, name)
    assert (run["status"], run["rows_scored"], run["chunks"], run["error_sqlstate"]) == ("failed", 600, 2, "22023")
    assert run["error"] == err.diag.message_primary
    assert conn.execute(f"SELECT count(*), max(id) FROM {name}_out").fetchone() == (600, 600)
    # mended, the next run goes on from the last committed chunk
    conn.execute(f"UPDATE {src} SET b = 1 WHERE id = 650")
    conn.execute("CALL run_batch_job(%s)", [name])
    resumed = runs(conn, name)[-1]
    assert (resumed["resumed_from"], resumed["rows_scored"], resumed["status"]) == (run["run_id"], 400, "succeeded")


def test_run_batch_job_refuses_a_transaction_block_and_other_roles(conn, connect, make_role, name):
    src = make_project(conn, name, rows=50)
    conn.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s)", [name, name, src, name + "_out"])
    c = connect(autocommit=False)
    err = sql_error(c, "CALL run_batch_job(%s)", [name])
    # PostgreSQL's own error for a procedure that commits, called inside a transaction block
    assert err.sqlstate == "2D000" and err.diag.message_primary == "invalid transaction termination"
    c.rollback()
    assert runs(conn, name) == []  # nothing half-written
    _, mallory = make_role(name + "_m")
    err = sql_error(mallory, "CALL run_batch_job(%s)", [name])
    assert err.sqlstate == "42501" and "runs as role" in err.diag.message_primary
    assert runs(conn, name) == []


def test_alter_and_drop(conn, name):
    src = make_project(conn, name, rows=50)
    out = name + "_out"
    conn.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s)", [name, name, src, out])
    conn.execute("SELECT alter_batch_job(%s, chunk_rows => 7, max_retries => 0, keep_runs => '1 day')", [name])
    assert conn.execute("SELECT chunk_rows, max_retries, keep_runs::text FROM pgmodels.batch_jobs WHERE job = %s",
                        [name]).fetchone() == (7, 0, "1 day")
    err = sql_error(conn, "SELECT alter_batch_job(%s, chunk_rows => 0)", [name])
    assert err.sqlstate == "22023" and "chunk_rows" in err.diag.message_primary
    conn.execute("CALL run_batch_job(%s)", [name])
    assert runs(conn, name)[-1]["chunks"] == 8
    conn.execute("SELECT drop_batch_job(%s)", [name])
    assert runs(conn, name) == []
    assert conn.execute(f"SELECT count(*) FROM {out}").fetchone() == (50,)  # kept
    conn.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s)", [name, name, src, out])  # the same table again
    conn.execute("SELECT drop_batch_job(%s, drop_output => true)", [name])
    assert conn.execute("SELECT to_regclass(%s)", [out]).fetchone() == (None,)
    assert sql_error(conn, "SELECT drop_batch_job(%s)", [name]).sqlstate == "42704"


@pytest.mark.parametrize("table", ["view", "partitioned"])
def test_views_and_partitioned_tables_are_sources(conn, name, table):
    src = make_project(conn, name, rows=300)
    if table == "view":
        conn.execute(f"CREATE VIEW {name}_s AS SELECT * FROM {src} WHERE id <= 200")
        expected = 200
    else:
        conn.execute(f"CREATE TABLE {name}_s (LIKE {src}) PARTITION BY RANGE (id)")
        conn.execute(f"CREATE TABLE {name}_p1 PARTITION OF {name}_s FOR VALUES FROM (1) TO (150)")
        conn.execute(f"CREATE TABLE {name}_p2 PARTITION OF {name}_s FOR VALUES FROM (150) TO (1000)")
        conn.execute(f"INSERT INTO {name}_s SELECT * FROM {src}")
        expected = 300
    conn.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, chunk_rows => 64)", [name, name, name + "_s",
                                                                                      name + "_out"])
    conn.execute("CALL run_batch_job(%s)", [name])
    assert runs(conn, name)[-1]["rows_scored"] == expected
