"""Drift monitors on the real pg_cron of the embedded cluster (database "pgmodels"), and
what a LOGIN-only role can and cannot do with monitors, reports and lineage."""

from __future__ import annotations

import json
import time

import psycopg

from dbhelpers import sql_error
from monitorhelpers import load, train

MONITOR = "monitor(text, text, text, text, boolean)"
TRAIN = "train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean)"


def test_pg_cron_runs_a_monitor_as_its_owner(cron_db, cluster, name):
    c, rolname, role = cron_db
    project, theirs = f"{name}.{name}", f"{name}.theirs"
    load(c, f"{name}.train", 1500, seed=1)
    c.execute(f"GRANT SELECT ON {name}.train TO {rolname}")
    c.execute(f"GRANT EXECUTE ON FUNCTION {TRAIN} TO {rolname}")
    train(role, project, f"{name}.train")  # the role's own project
    train(c, theirs, f"{name}.train")  # a project of another role, which the role may predict with
    c.execute("SELECT grant_project(%s, %s, 'predict')", [theirs, rolname])
    load(c, f"{name}.events", 1500, seed=2, shift={"f6": 1.0}, with_time=True)
    c.execute(f"GRANT SELECT ON {name}.events TO {rolname}")
    # no EXECUTE on monitor(): an administrator's grant
    err = sql_error(role, "SELECT monitor(%s, %s, '* * * * *', 'ts')", [project, f"{name}.events"])
    assert err.sqlstate == "42501" and "monitor" in err.diag.message_primary
    c.execute(f"GRANT EXECUTE ON FUNCTION {MONITOR} TO {rolname}")
    # a project it may only predict with: its reports would be another owner's record
    err = sql_error(role, "SELECT monitor(%s, %s, '* * * * *', 'ts')", [theirs, f"{name}.events"])
    assert err.sqlstate == "42501"
    for schedule in ("every minute", "61 * * * *", ""):
        err = sql_error(role, "SELECT monitor(%s, %s, %s, 'ts')", [project, f"{name}.events", schedule])
        assert err.sqlstate == "22023" and "cron schedule" in err.diag.message_primary, schedule
    assert c.execute("SELECT count(*) FROM pgmodels.monitor m JOIN pgmodels.projects p ON p.id = m.project_id "
                     "WHERE p.name IN (%s, %s)", [project, theirs]).fetchone() == (0,)
    listener = psycopg.connect(cluster.url("pgmodels"), autocommit=True)
    listener.execute("LISTEN pgmodels_drift")
    monitor_id = role.execute("SELECT monitor(%s, %s, '* * * * *', 'ts')", [project, f"{name}.events"]).fetchone()[0]
    entry = c.execute("SELECT j.username, j.command, j.schedule FROM cron.job j JOIN pgmodels.monitor m "
                      "ON m.cron_job_id = j.jobid WHERE m.id = %s", [monitor_id]).fetchone()
    assert entry[0] == rolname and f"run_monitor({monitor_id}::bigint)" in entry[1] and entry[2] == "* * * * *"
    deadline = time.monotonic() + 130
    report = None
    while time.monotonic() < deadline and report is None:
        report = c.execute("SELECT id, status, drifted, created_by, rows FROM pgmodels.drift_report "
                           "WHERE monitor_id = %s", [monitor_id]).fetchone()
        time.sleep(1)
    assert report is not None, "pg_cron did not run the monitor within two minutes"
    assert report[1] == "drift" and report[2] == ["f6"] and report[3] == rolname and report[4] == 1500
    notes = [n for n in listener.notifies(timeout=5, stop_after=1)]
    assert json.loads(notes[0].payload)["report_id"] == report[0]
    listener.close()
    # the role sees its report through the view; dropping the monitor removes the entry
    assert role.execute("SELECT count(*) FROM pgmodels.drift_reports WHERE project = %s", [project]).fetchone()[0] >= 1
    role.execute("SELECT drop_monitor(%s)", [monitor_id])
    assert c.execute("SELECT count(*) FROM cron.job WHERE command LIKE %s",
                     [f"%run_monitor({monitor_id}::%"]).fetchone() == (0,)
    c.execute("DELETE FROM pgmodels.projects WHERE name = %s", [theirs])


def test_attacks_on_monitors_reports_and_lineage_as_a_login_only_role(conn, make_role, name):
    load(conn, f"{name}_train", 800, seed=1)
    model_id = train(conn, name, f"{name}_train")
    load(conn, f"{name}_cur", 800, seed=2, shift={"f1": 1.0})
    monitor_id = conn.execute("SELECT monitor(%s, %s, NULL)", [name, f"{name}_cur"]).fetchone()[0]
    report_id = conn.execute("SELECT run_monitor(%s)", [monitor_id]).fetchone()[0]
    rolname, role = make_role(name + "_x")
    # drift needs the predict privilege, then monitor (drift statistics reveal the training
    # distribution: issue #24), and then SELECT on the relation
    err = sql_error(role, "SELECT * FROM drift(%s, %s)", [name, f"{name}_cur"])
    assert err.sqlstate == "42501" and "permission denied for project" in err.diag.message_primary
    conn.execute("SELECT grant_project(%s, %s, 'predict')", [name, rolname])
    err = sql_error(role, "SELECT * FROM drift(%s, %s)", [name, f"{name}_cur"])
    assert err.sqlstate == "42501" and "training profile" in err.diag.message_primary
    conn.execute("SELECT grant_project(%s, %s, 'monitor')", [name, rolname])
    err = sql_error(role, "SELECT * FROM drift(%s, %s)", [name, f"{name}_cur"])
    assert err.sqlstate == "42501" and "permission denied for relation" in err.diag.message_primary
    conn.execute(f"REVOKE EXECUTE ON FUNCTION {MONITOR} FROM PUBLIC")  # (as the extension ships it)
    # another role's monitor: neither run, dropped, nor written to
    for statement in ("SELECT run_monitor(%s)", "SELECT drop_monitor(%s)"):
        err = sql_error(role, statement, [monitor_id])
        assert err.sqlstate == "42501", statement
    cred = "pgmodels._credential()"
    attacks = [
        (f"SELECT pgmodels._drift_report_write({cred}, %s, %s, now(), now(), 1, 'ok', '{{}}', '[]', '{{}}')",
         [monitor_id, model_id]),
        (f"SELECT pgmodels._drift_report_decide({cred}, %s, '{{\"deployed\": true}}')", [report_id]),
        (f"SELECT * FROM pgmodels._monitor_get({cred}, %s)", [monitor_id]),
        (f"SELECT pgmodels._store_reference({cred}, %s, '{{\"features\": {{}}}}')", [model_id]),
        (f"SELECT pgmodels._set_monitor_thresholds({cred}, %s, 9, 9, 0.5, 0.5, 0, 1, 'drift')", [name]),
        (f"SELECT pgmodels._drop_monitor({cred}, %s)", [monitor_id]),
        ("SELECT set_reference(%s, %s)", [name, f"{name}_train"]),
        # a forged credential is refused before anything is read
        ("SELECT pgmodels._drift_report_write('10:' || repeat('a', 64), %s, %s, now(), now(), 1, 'ok', '{}', "
         "'[]', '{}')", [monitor_id, model_id]),
        ("SELECT * FROM pgmodels._model_lineage(%s, '10:' || repeat('0', 64))", [model_id]),
    ]
    for statement, params in attacks:
        err = sql_error(role, statement, params)
        assert err.sqlstate in ("42501", "28000", "22023"), (statement, err.sqlstate, err.diag.message_primary)
    # the monitor's owner itself cannot store a report or a decision the views cannot read,
    # or one the catalog contradicts
    forged = [
        ("SELECT pgmodels._drift_report_write(pgmodels._credential(), %s, %s, now(), now(), 1, 'ok', '{}', "
         "'[{\"feature\": \"x1\"}]', '{}')", [monitor_id, model_id]),
        ("SELECT pgmodels._drift_report_write(pgmodels._credential(), %s, %s, now(), now(), 1, 'ok', '{}', "
         "'[{\"feature\": \"f1\", \"kind\": \"numeric\", \"rows\": 1, \"status\": \"ok\", \"psi\": \"x\"}]', '{}')",
         [monitor_id, model_id]),
        ("SELECT pgmodels._drift_report_write(pgmodels._credential(), %s, %s, now(), now(), 1, 'ok', '{}', "
         "'[{\"feature\": \"f1\", \"kind\": \"numeric\", \"rows\": 1, \"status\": \"drift\"}]', '{}')",
         [monitor_id, model_id]),
        ("SELECT pgmodels._drift_report_write(pgmodels._credential(), %s, %s, now(), now(), -5, 'ok', '{}', '[]', '{}')",
         [monitor_id, model_id]),
        ("SELECT pgmodels._drift_report_decide(pgmodels._credential(), %s, "
         "'{\"deployed\": true, \"new_model_id\": 1, \"new_version\": 1}')", [report_id]),
    ]
    for statement, params in forged:
        err = sql_error(conn, statement, params)
        assert err.sqlstate in ("22023", "42501"), (statement, err.sqlstate, err.diag.message_primary)
    assert conn.execute("SELECT count(*), bool_and(retrain IS NULL) FROM pgmodels.drift_report "
                        "WHERE project_id = (SELECT id FROM pgmodels.projects WHERE name = %s)",
                        [name]).fetchone() == (1, True)
    assert conn.execute("SELECT count(*) FROM pgmodels.monitor WHERE id = %s", [monitor_id]).fetchone() == (1,)
    # reports and lineage: visible with the grants (reports need monitor), and the same
    # "does not exist" without them
    assert role.execute("SELECT count(*) FROM pgmodels.drift_reports WHERE id = %s", [report_id]).fetchone() == (1,)
    assert role.execute("SELECT count(*) FROM model_lineage(%s)", [model_id]).fetchone()[0] > 10
    conn.execute("SELECT revoke_project(%s, %s, 'all')", [name, rolname])
    for view in ("drift_reports", "monitors", "history", "drift_report_features"):
        assert role.execute(f"SELECT count(*) FROM pgmodels.{view} WHERE project = %s", [name]).fetchone() == (0,)
    err = sql_error(role, "SELECT * FROM model_lineage(%s)", [model_id])
    other = sql_error(role, "SELECT * FROM model_lineage(987654321)")
    assert err.sqlstate == other.sqlstate == "42704"
    assert err.diag.message_primary.replace(str(model_id), "N") == other.diag.message_primary.replace("987654321", "N")
    # the catalog tables themselves are closed
    for table in ("drift_report", "monitor", "monitor_settings"):
        assert sql_error(role, f"SELECT * FROM pgmodels.{table}").sqlstate == "42501"
    # a relation name is resolved, never pasted into SQL
    err = sql_error(conn, "SELECT * FROM drift(%s, %s)", [name, f"{name}_cur; DROP TABLE {name}_train"])
    assert err.sqlstate in ("22023", "42P01")
    assert conn.execute("SELECT to_regclass(%s)", [f"{name}_train"]).fetchone()[0] is not None
