"""Batch jobs on the real pg_cron of the embedded cluster, which lives in its database
"pgmodels" (cron.database_name). One test waits for pg_cron's next minute."""

from __future__ import annotations

import re
import time

import psycopg
import pytest

from batchhelpers import CREATE, make_project, runs
from dbhelpers import role_connection, sql_error


def test_invalid_schedules_are_refused_and_leave_nothing(cron_db, name):
    c, rolname, role = cron_db
    src = make_project(c, f"{name}.{name}", rows=20)
    c.execute(f"GRANT EXECUTE ON FUNCTION {CREATE} TO {rolname}")
    c.execute("SELECT grant_project(%s, %s, 'predict')", [f"{name}.{name}", rolname])
    c.execute(f"GRANT SELECT ON {src} TO {rolname}")
    for schedule in ("every minute", "30 seconds", "61 * * * *", ""):
        err = sql_error(role, "SELECT create_batch_job(%s, %s, %s, 'id', %s, schedule => %s)",
                        [name, f"{name}.{name}", src, f"{name}.out", schedule])
        assert err.sqlstate == "22023" and "cron schedule" in err.diag.message_primary, schedule
        assert "cron syntax" in err.diag.message_hint
    assert c.execute("SELECT count(*) FROM pgmodels.batch_job WHERE name = %s", [name]).fetchone() == (0,)
    assert c.execute("SELECT to_regclass(%s)", [f"{name}.out"]).fetchone() == (None,)
    assert c.execute("SELECT count(*) FROM cron.job WHERE command LIKE %s", [f"%{name}%"]).fetchone() == (0,)


def test_pg_cron_runs_scheduled_jobs_as_their_owner_here_and_in_other_databases(cron_db, conn, name, make_role,
                                                                                cluster):
    c, rolname, role = cron_db
    project = f"{name}.{name}"
    src = make_project(c, project, rows=1500)
    c.execute(f"GRANT EXECUTE ON FUNCTION {CREATE} TO {rolname}")
    c.execute("SELECT grant_project(%s, %s, 'predict')", [project, rolname])
    c.execute(f"GRANT SELECT ON {src} TO {rolname}")
    role.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, schedule => '* * * * *', chunk_rows => 500)",
                 [name, project, src, f"{name}.out"])
    entry = c.execute("""SELECT j.username, j.database, j.command, j.schedule FROM cron.job j
                           JOIN pgmodels.batch_job b ON b.cron_job_id = j.jobid WHERE b.name = %s""",
                      [name]).fetchone()
    assert entry[0] == rolname and entry[1] == "pgmodels" and entry[3] == "* * * * *"
    assert re.fullmatch(r"CALL \w+\.run_batch_job\('" + name + r"'::text\)", entry[2])

    # another database: refused with a hint a superuser can follow
    other_src = make_project(conn, name, rows=300)
    err = sql_error(conn, "SELECT create_batch_job(%s, %s, %s, 'id', %s, schedule => '* * * * *')",
                    [name, name, other_src, name + "_out"])
    statement = re.search(r"with: (SELECT cron\.schedule_in_database\(.*\)); or", err.diag.message_hint).group(1)
    conn.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s)", [name, name, other_src, name + "_out"])
    c.execute(statement.replace("'pgmodels_batch:", f"'{name}:"))

    # pg_cron keeps its history forever; a run prunes the job's beyond keep_runs
    cron_id = c.execute("SELECT cron_job_id FROM pgmodels.batch_job WHERE name = %s", [name]).fetchone()[0]
    c.execute("INSERT INTO cron.job_run_details (jobid, runid, status, start_time, end_time) "
              "VALUES (%s, nextval('cron.runid_seq'), 'succeeded', now() - '30 days'::interval, "
              "now() - '30 days'::interval)", [cron_id])
    # the pruning is checked on a run that started after that row was there (a run may
    # have started in the minute between the job's creation and the insert)
    inserted = c.execute("SELECT clock_timestamp()").fetchone()[0]

    deadline = time.time() + 150
    here = there = None
    while time.time() < deadline and not (here and there and any(r["started_at"] > inserted for r in here)):
        time.sleep(2)
        here = [r for r in runs(role, name) if r["triggered_by"] == "pg_cron" and r["status"] == "succeeded"]
        there = [r for r in runs(conn, name) if r["triggered_by"] == "pg_cron" and r["status"] == "succeeded"]
    assert here and there, (runs(role, name), runs(conn, name))
    assert here[0]["rows_scored"] == 1500 and there[0]["rows_scored"] == 300
    # batch_jobs shows the entry that runs each: pgmodels' own here; from the other database,
    # where pg_cron runs it and the query that finds its entry there
    assert role.execute("SELECT cron_entry FROM pgmodels.batch_jobs WHERE job = %s", [name]).fetchone() == \
        (f"pg_cron job {cron_id} in this database",)
    shown = conn.execute("SELECT cron_entry FROM pgmodels.batch_jobs WHERE job = %s", [name]).fetchone()[0]
    assert shown.startswith('pg_cron runs it from database "pgmodels"'), shown
    found = c.execute(shown.split("its entry is there: ")[1]).fetchall()
    assert len(found) == 1 and found[0][0] is not None
    # the entry of a job is its owner's to see: another role's credential gets nothing
    job_id = c.execute("SELECT id FROM pgmodels.batch_job WHERE name = %s", [name]).fetchone()[0]
    outsider_name, _ = make_role(name + "_outsider")
    with role_connection(cluster, "pgmodels", outsider_name) as outsider:
        assert outsider.execute("SELECT * FROM pgmodels._cron_entry(pgmodels._credential(), %s)",
                                [job_id]).fetchone() == (None,) * 6
        assert outsider.execute("SELECT count(*) FROM pgmodels.batch_jobs WHERE job = %s", [name]).fetchone() == (0,)
    c.execute(f"DROP OWNED BY {outsider_name}")
    assert role.execute(f"SELECT count(*) FROM {name}.out").fetchone() == (1500,)
    assert conn.execute(f"SELECT count(*) FROM {name}_out").fetchone() == (300,)
    assert c.execute("SELECT count(*) FROM cron.job_run_details WHERE jobid = %s AND end_time < now() - "
                     "'1 day'::interval", [cron_id]).fetchone() == (0,)
    assert c.execute("SELECT count(*) FROM cron.job_run_details WHERE jobid = %s AND status = 'succeeded'",
                     [cron_id]).fetchone()[0] >= 1

    # unscheduling and dropping take the pg_cron entry away (altering needs its own grant)
    assert sql_error(role, "SELECT alter_batch_job(%s, unschedule => true)", [name]).sqlstate == "42501"
    c.execute(f"GRANT EXECUTE ON FUNCTION alter_batch_job(text, text, integer, integer, interval, interval, boolean) "
              f"TO {rolname}")
    role.execute("SELECT alter_batch_job(%s, unschedule => true)", [name])
    assert c.execute("SELECT count(*) FROM cron.job WHERE jobid = %s", [cron_id]).fetchone() == (0,)
    role.execute("SELECT alter_batch_job(%s, schedule => '0 3 * * *')", [name])
    new_id = c.execute("SELECT cron_job_id FROM pgmodels.batch_job WHERE name = %s", [name]).fetchone()[0]
    assert c.execute("SELECT schedule, username FROM cron.job WHERE jobid = %s", [new_id]).fetchone() == \
        ("0 3 * * *", rolname)
    role.execute("SELECT drop_batch_job(%s)", [name])
    assert c.execute("SELECT count(*) FROM cron.job WHERE jobid = %s", [new_id]).fetchone() == (0,)
    conn.execute("SELECT drop_batch_job(%s)", [name])
