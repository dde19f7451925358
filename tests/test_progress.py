"""Progress of long work: messages as they happen, and the pgmodels.progress view seen
from another session while the work runs (training, batch runs, stream catch-up)."""

from __future__ import annotations

import threading
import time

import pytest

from batchhelpers import block_key, call_in_background, make_project
from dbhelpers import sql_error
from lifecycle_data import make_numeric
from streamhelpers import insert_rides, regression_project, ride_stream

GRID = '{"n_estimators": [20, 40, 60], "max_depth": [2, 3]}'  # 6 candidates


def notices_of(c):
    got = []
    c.add_notice_handler(lambda d: got.append((time.monotonic(), d.severity_nonlocalized, d.message_primary)))
    return got


def grid_train(c, project: str, table: str):
    return c.execute("SELECT version, deployed FROM train(%s, 'classification', %s, 'y', 'random_forest', "
                     "search => 'grid', search_params => %s, search_args => '{\"cv\": 3}')",
                     [project, table, GRID]).fetchone()


def test_training_stages_arrive_as_notices_while_it_runs(connect, name):
    c = connect(application_name="t")
    make_numeric(c, name, 3000)
    got = notices_of(c)
    grid_train(c, name, name)
    returned = time.monotonic()
    messages = [m for _, _, m in got]
    prefix = f'train "{name}": '
    assert all(m.startswith(prefix) for m in messages), messages
    stages = [m[len(prefix):] for m in messages]
    assert stages[0] == f"read 3000 rows of public.{name} (4 features)"
    assert stages[1] == "fitting candidate 1 of 6 (random_forest, grid search, 3-fold cross-validation on 2250 rows)"
    assert stages[2:7] == [f"fitting candidate {k} of 6" for k in range(2, 7)]
    assert stages[7:11] == ["refitting the best candidate on all the training rows", "scoring on 750 test rows",
                            "converting to ONNX", "verifying the ONNX model against the native one on 750 rows"]
    assert stages[11].startswith("storing the model (onnx, ") and stages[11].endswith(" bytes)")
    assert stages[12].startswith("trained version 1 in ") and stages[12].endswith(" s, deployed")
    assert len(stages) == 13
    assert {s for _, s, _ in got} == {"NOTICE"}
    # as they happen: the first candidate's message came long before the statement returned
    assert returned - got[1][0] > 0.2 and got[7][0] - got[1][0] > 0.1
    assert c.execute("SELECT current_setting('application_name')").fetchone()[0] == "t"


def test_other_sessions_see_the_stage_while_training_runs(connect, name):
    worker, watcher = connect(application_name="my app"), connect()
    make_numeric(watcher, name, 3000)
    pid = worker.info.backend_pid
    done = threading.Event()
    thread = threading.Thread(target=lambda: (grid_train(worker, name, name), done.set()), daemon=True)
    thread.start()
    seen = []
    while not done.is_set() and thread.is_alive():
        for row in watcher.execute("SELECT operation, name, stage, step, steps, role FROM pgmodels.progress "
                                   "WHERE pid = %s", [pid]).fetchall():
            if row not in seen:
                seen.append(row)
        time.sleep(0.01)
    thread.join(60)
    assert done.is_set()
    fitting = [r for r in seen if r[2] == "fitting"]
    assert fitting and all(r[:2] == ("train", name) and r[4] == 6 and 1 <= r[3] <= 6 and r[5] == "postgres"
                           for r in fitting)
    assert [r[3] for r in fitting] == sorted(r[3] for r in fitting)  # candidates in order
    assert {r[2] for r in seen} <= {"starting", "reading", "fitting", "refitting", "scoring", "converting", "verifying",
                                    "storing", "done"}
    # the caller's own application_name is back, and nothing is left in the view
    assert worker.execute("SELECT current_setting('application_name')").fetchone()[0] == "my app"
    assert watcher.execute("SELECT count(*) FROM pgmodels.progress WHERE pid = %s", [pid]).fetchone()[0] == 0
    assert watcher.execute("SELECT application_name FROM pg_stat_activity WHERE pid = %s",
                           [pid]).fetchone()[0] == "my app"


def test_a_training_waiting_to_read_shows_reading(connect, test_db, name):
    locker, watcher = connect(autocommit=False), connect()
    make_numeric(watcher, name, 300)
    locker.execute(f"LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE")
    thread, outcome = call_in_background(test_db, "SELECT * FROM train(%s, 'classification', %s, 'y')",
                                         [name, name])
    try:
        deadline = time.monotonic() + 30
        row = None
        while time.monotonic() < deadline and (row is None or row[2] != "reading"):  # after "starting"
            row = watcher.execute("SELECT operation, name, stage, step FROM pgmodels.progress WHERE name = %s",
                                  [name]).fetchone()
            time.sleep(0.02)
        assert row == ("train", name, "reading", None)
    finally:
        locker.rollback()
    thread.join(60)
    assert outcome.get("ok"), outcome


def test_the_level_is_a_setting(connect, name):
    c = connect()
    make_numeric(c, name, 300)
    got = notices_of(c)
    c.execute("SET pgmodels.progress_level = 'off'")
    c.execute("SELECT * FROM train(%s, 'classification', %s, 'y')", [name, name])
    assert got == []
    c.execute("SET pgmodels.progress_level = 'info'")
    c.execute("SELECT * FROM train(%s)", [name])
    assert {s for _, s, _ in got} == {"INFO"} and len(got) == 7  # read, fitting, scoring, converting, verifying, storing, done
    c.execute("SET pgmodels.progress_level = 'loud'")
    e = sql_error(c, "SELECT * FROM train(%s)", [name])
    assert e.sqlstate == "22023"
    assert e.diag.message_primary == 'invalid value for parameter "pgmodels.progress_level": "loud"'
    assert e.diag.message_hint == "Available values: notice, info, log, debug, warning, off."


def test_a_failed_or_cancelled_training_leaves_no_stage(connect, name):
    c, watcher = connect(application_name="mine"), connect()
    make_numeric(c, name, 3000)
    c.execute("SET statement_timeout = '700ms'")
    e = sql_error(c, "SELECT * FROM train(%s, 'classification', %s, 'y', 'random_forest', "
                     "search => 'grid', search_params => %s)", [name, name, '{"n_estimators": [300, 400, 500]}'])
    assert e.sqlstate == "57014"
    assert c.execute("SELECT current_setting('application_name')").fetchone()[0] == "mine"
    assert watcher.execute("SELECT count(*) FROM pgmodels.progress WHERE pid = %s",
                           [c.info.backend_pid]).fetchone()[0] == 0


def test_a_batch_run_reports_each_chunk(connect, test_db, name):
    c, watcher = connect(), connect()
    src = make_project(c, name, rows=2500)
    c.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, chunk_rows => 1000)", [name, name, src, name + "_out"])
    c.execute(f"ANALYZE {src}")
    got = notices_of(c)
    c.execute("SET application_name = 'batch caller'")
    c.execute("CALL run_batch_job(%s)", [name])
    assert c.execute("SELECT current_setting('application_name')").fetchone()[0] == "batch caller"
    assert [m for _, _, m in got] == [
        f'batch job "{name}": scoring chunk 1 (rows 1 to 1000 of about 2500)',
        f'batch job "{name}": scoring chunk 2 (rows 1001 to 2000 of about 2500)',
        f'batch job "{name}": scoring chunk 3 (rows 2001 to 3000 of about 2500)']
    # seen from another session in the middle of a run: held at a key of the second chunk
    job = name + "_2"
    c.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, chunk_rows => 1000)", [job, name, src, job + "_out"])
    blocker = block_key(connect, job + "_out", 1500)
    thread, outcome = call_in_background(test_db, "CALL run_batch_job(%s)", [job])
    try:
        deadline, row = time.monotonic() + 30, None
        while time.monotonic() < deadline and (row is None or row[2] != 2):
            row = watcher.execute("SELECT operation, stage, step, steps FROM pgmodels.progress WHERE name = %s",
                                  [job]).fetchone()
            time.sleep(0.02)
        assert row == ("batch", "scoring", 2, 3)
    finally:
        blocker.rollback()
    thread.join(60)
    assert outcome.get("ok"), outcome


def test_stream_catch_up_reports_its_events(connect, name):
    c = connect()
    regression_project(c, name + "_m")
    table = ride_stream(c, name)
    c.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_c", name + "_m"])
    insert_rides(c, table, 250)
    got = notices_of(c)
    taken = [c.execute("SELECT process_stream(%s, 100)", [name + "_c"]).fetchone()[0] for _ in range(3)]
    assert taken == [100, 100, 50]
    assert [m for _, _, m in got] == [
        f'stream "{name}_c": catching up: events 1 to 100 of about 250',
        f'stream "{name}_c": catching up: events 101 to 200 of about 250',
        f'stream "{name}_c": caught up after 250 events']
    insert_rides(c, table, 5, start=250)  # a steady stream says nothing
    assert c.execute("SELECT process_stream(%s, 100)", [name + "_c"]).fetchone()[0] == 5
    assert len(got) == 3


@pytest.mark.parametrize("appname", ["pgmodels train fitting 3/12 churn", "pgmodels batch scoring 7/ nightly churn"])
def test_the_view_reads_what_a_backend_publishes(connect, appname):
    c, watcher = connect(application_name=appname), connect()
    row = watcher.execute("SELECT operation, stage, step, steps, name FROM pgmodels.progress WHERE pid = %s",
                          [c.info.backend_pid]).fetchone()
    assert row == {"pgmodels train fitting 3/12 churn": ("train", "fitting", 3, 12, "churn"),
                   "pgmodels batch scoring 7/ nightly churn": ("batch", "scoring", 7, None, "nightly churn")}[appname]


def test_other_roles_work_is_not_shown(connect, make_role, name):
    rolname, other = make_role("r_" + name)
    c = connect(application_name="pgmodels train fitting 1/2 secret_project")
    assert other.execute("SELECT count(*) FROM pgmodels.progress WHERE pid = %s",
                         [c.info.backend_pid]).fetchone()[0] == 0
    other.execute("SET application_name = 'pgmodels train reading mine'")
    assert other.execute("SELECT role, name FROM pgmodels.progress WHERE pid = pg_backend_pid()").fetchone() \
        == (rolname, "mine")
    other.close()
