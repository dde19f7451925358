"""The demo's batch step: a scheduled scoring job, a lookup by key, an incremental run,
and, at the end of the demo, the run pg_cron made by itself."""

from __future__ import annotations

import time

JOB = "demo_nightly_churn"


def batch_step(conn, say) -> bool:
    """Returns whether the job is scheduled with pg_cron (only in pg_cron's database)."""
    conn.execute("SELECT drop_batch_job(job, drop_output => true) FROM pgmodels.batch_jobs WHERE job = %s", [JOB])
    conn.execute("ALTER TABLE public.churn ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now()")
    conn.execute("CREATE INDEX IF NOT EXISTS churn_updated_at ON public.churn (updated_at)")
    cron_db = conn.execute("SELECT current_setting('cron.database_name', true) = current_database()").fetchone()[0]
    schedule = "* * * * *" if cron_db else None
    conn.execute("SELECT create_batch_job(%s, 'churn', 'public.churn', 'customer_id', 'public.churn_scores', "
                 "schedule => %s, incremental_column => 'updated_at', "
                 "outputs => ARRAY['prediction', 'probabilities', 'label'])", [JOB, schedule])
    say(f"   create_batch_job('{JOB}', 'churn', 'churn', 'customer_id', 'churn_scores', "
        f"schedule => {schedule!r}, incremental_column => 'updated_at')")
    if cron_db:
        entry = conn.execute("SELECT j.schedule, j.username, j.command FROM cron.job j JOIN pgmodels.batch_jobs b "
                             "ON b.cron_job_id = j.jobid WHERE b.job = %s", [JOB]).fetchone()
        say(f"   pg_cron entry: '{entry[0]}' as {entry[1]}: {entry[2]}")
    else:
        say("   (this database is not pg_cron's, so the job runs by hand only)")
    conn.execute("CALL run_batch_job(%s)", [JOB])
    _show_last_run(conn, say, "by hand, now")
    t = time.perf_counter()
    row = conn.execute("SELECT customer_id, label, probabilities, model_version FROM public.churn_scores "
                       "WHERE customer_id = 42").fetchone()
    say(f"   the app's lookup by key: customer {row[0]} churns={row[1]} probabilities={row[2]} "
        f"(model version {row[3]}, {1000 * (time.perf_counter() - t):.1f} ms)")
    conn.execute("UPDATE public.churn SET support_calls = support_calls + 1, updated_at = clock_timestamp() "
                 "WHERE customer_id % 100 = 0")
    conn.execute("CALL run_batch_job(%s)", [JOB])
    _show_last_run(conn, say, "after 1 % of the customers changed")
    return bool(cron_db)


def _show_last_run(conn, say, when: str) -> None:
    r = conn.execute("SELECT mode, rows_scored, chunks, round(rows_per_second), triggered_by, status "
                     "FROM pgmodels.batch_runs WHERE job = %s ORDER BY run_id DESC LIMIT 1", [JOB]).fetchone()
    say(f"   run {when}: {r[5]}, {r[0]}, {r[1]} rows in {r[2]} chunks, {r[3]:,.0f} rows/s, triggered by {r[4]}")


def cron_step(conn, say, timeout: float = 75.0) -> None:
    """Waits for the run pg_cron starts by itself at the next minute, then unschedules."""
    say("== pg_cron: the job's scheduled run (pg_cron starts jobs on the minute)")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute("SELECT started_at, status, mode, rows_scored FROM pgmodels.batch_runs "
                           "WHERE job = %s AND triggered_by = 'pg_cron' AND status <> 'running' "
                           "ORDER BY run_id DESC LIMIT 1", [JOB]).fetchone()
        if row:
            say(f"   pg_cron ran it at {row[0]:%H:%M:%S}: {row[1]}, {row[2]}, {row[3]} rows")
            break
        time.sleep(1)
    else:
        say("   pg_cron did not run the job within a minute; see cron.job_run_details")
    conn.execute("SELECT alter_batch_job(%s, unschedule => true)", [JOB])
    say(f"   unscheduled (SELECT alter_batch_job('{JOB}', unschedule => true)); the scores stay in churn_scores")
