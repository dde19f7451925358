-- Batch deployment: create_batch_job(), run_batch_job(), alter_batch_job(),
-- drop_batch_job(), and the views pgmodels.batch_jobs and pgmodels.batch_runs.
--
-- A job scores a relation (a table or a view) with a project's deployed model into an
-- output table that holds one current prediction per key, on a pg_cron schedule or by
-- hand. It runs with the rights of the role that created it: pg_cron connects as that
-- role, and a run by hand must be made as it. A run goes through the source in key order
-- (or, for an incremental run, in the order of its column, then key), a chunk at a time:
-- one statement reads the chunk, scores it in one model run (pgmodels._score_rows) and
-- upserts it, and the run commits after every chunk, recording where it got to. A run
-- that dies loses at most its last chunk; the next run goes on from there. Two runs of
-- a job never overlap: a run claims the job in the catalog (its backend's pid and start
-- time), and a run that finds the claim's backend alive is recorded as skipped. The work is in python_udfs/pgmodels/batch/.

CREATE OR REPLACE FUNCTION pgmodels._create_batch_job(job_name text, project_name text, relation_name text,
    key_column text, output_table text, schedule text, incremental_column text, outputs text[], chunk_rows integer,
    max_retries integer, retry_delay interval, keep_runs interval)
RETURNS bigint LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.batch.jobs import create; return create(job_name, project_name, relation_name, key_column, output_table, schedule, incremental_column, outputs, chunk_rows, max_retries, retry_delay, keep_runs)
$$;
COMMENT ON FUNCTION pgmodels._create_batch_job(text, text, text, text, text, text, text, text[], integer, integer, interval, interval) IS 'internal: the core of create_batch_job(), run as the caller';

CREATE OR REPLACE FUNCTION @extschema@.create_batch_job(
    job_name text,
    project_name text,
    relation_name text,
    key_column text,
    output_table text,
    schedule text DEFAULT NULL,
    incremental_column text DEFAULT NULL,
    outputs text[] DEFAULT ARRAY['prediction'],
    chunk_rows integer DEFAULT 10000,
    max_retries integer DEFAULT 2,
    retry_delay interval DEFAULT '10 seconds',
    keep_runs interval DEFAULT '14 days')
RETURNS bigint LANGUAGE sql VOLATILE
AS $$
    SELECT coalesce(pgmodels._create_batch_job($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12),
                    pgmodels._raise_pending(NULL::bigint))
$$;
COMMENT ON FUNCTION @extschema@.create_batch_job(text, text, text, text, text, text, text, text[], integer, integer, interval, interval) IS 'registers a batch scoring job: a project''s deployed model scores a relation into an output table keyed like it (created when missing), on a pg_cron schedule or by CALL run_batch_job(); returns the job id';

CREATE OR REPLACE PROCEDURE pgmodels._run_batch_job(job_name text)
LANGUAGE plpython3u
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return
from pgmodels.batch.run import run; run(job_name)
$$;
COMMENT ON PROCEDURE pgmodels._run_batch_job(text) IS 'internal: the core of run_batch_job()';

-- No SET clause and no EXCEPTION block: either would forbid the COMMITs of the core.
CREATE OR REPLACE PROCEDURE @extschema@.run_batch_job(job_name text)
LANGUAGE plpgsql
AS $$
BEGIN
    CALL pgmodels._run_batch_job(job_name);
    PERFORM pgmodels._raise_pending(NULL::integer);
END
$$;
COMMENT ON PROCEDURE @extschema@.run_batch_job(text) IS 'runs a batch job now, as pg_cron does: scores the source a chunk at a time, committing after each, and records the run in pgmodels.batch_runs; for the job''s owner, outside a transaction block';

CREATE OR REPLACE FUNCTION @extschema@.alter_batch_job(job_name text, schedule text DEFAULT NULL,
    chunk_rows integer DEFAULT NULL, max_retries integer DEFAULT NULL, retry_delay interval DEFAULT NULL,
    keep_runs interval DEFAULT NULL, unschedule boolean DEFAULT false)
RETURNS void LANGUAGE sql VOLATILE
AS $$ SELECT pgmodels._batch_alter(pgmodels._credential(), $1, $2, $7, $3, $4, $5, $6) $$;
COMMENT ON FUNCTION @extschema@.alter_batch_job(text, text, integer, integer, interval, interval, boolean) IS 'changes a batch job''s schedule (or removes it with unschedule => true), chunk size, retries or history retention; arguments left NULL keep their value';

CREATE OR REPLACE FUNCTION @extschema@.drop_batch_job(job_name text, drop_output boolean DEFAULT false)
RETURNS void LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    output regclass := pgmodels._batch_drop(pgmodels._credential(), job_name);
BEGIN
    IF drop_output AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = output) THEN  -- as its owner
        EXECUTE format('DROP TABLE %s', output);
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.drop_batch_job(text, boolean) IS 'unschedules and removes a batch job and its run history; keeps its output table unless drop_output => true';

CREATE OR REPLACE VIEW pgmodels.batch_runs WITH (security_barrier) AS
SELECT r.id AS run_id,
       j.name AS job,
       p.name AS project,
       CASE WHEN l.dead THEN 'failed' ELSE r.status END AS status,
       r.mode,
       r.triggered_by,
       r.attempt,
       r.resumed_from,
       r.started_at,
       r.finished_at,
       coalesce(r.finished_at, clock_timestamp()) - r.started_at AS duration,
       r.rows_scored,
       r.rows_removed,
       r.chunks,
       round((r.rows_scored / greatest(extract(epoch FROM coalesce(r.finished_at, clock_timestamp()) - r.started_at),
                                       0.001))::numeric, 1) AS rows_per_second,
       r.model_id,
       r.model_version,
       r.low_watermark,
       r.high_watermark,
       r.cursor_key,
       r.cursor_value,
       CASE WHEN l.dead THEN 'the run was interrupted: its backend ended before it finished' ELSE r.error END AS error,
       CASE WHEN l.dead THEN '57P01' ELSE r.error_sqlstate END AS error_sqlstate,
       r.error_detail,
       r.error_hint,
       r.pid,
       j.owner::text AS owner
FROM pgmodels.batch_run r
JOIN pgmodels.batch_job j ON j.id = r.job_id
JOIN pgmodels.projects p ON p.id = j.project_id
CROSS JOIN LATERAL (SELECT r.status = 'running' AND NOT pgmodels._backend_alive(r.pid, r.backend_start) AS dead) l
WHERE pg_catalog.pg_has_role(pgmodels._me(), j.owner, 'USAGE');
COMMENT ON VIEW pgmodels.batch_runs IS 'one row per run of the batch jobs the current role owns: status (running, succeeded, failed, skipped), rows scored so far, chunks, rows/s, the model that scored them, what triggered it, the error; a running run''s progress is visible from any session';
GRANT SELECT ON pgmodels.batch_runs TO PUBLIC;

CREATE OR REPLACE VIEW pgmodels.batch_jobs WITH (security_barrier) AS
SELECT j.name AS job,
       j.id AS job_id,
       j.owner::text AS owner,
       p.name AS project,
       j.source::text AS source,
       j.key_column,
       j.output::text AS output,
       j.incremental_column,
       j.outputs,
       coalesce(j.schedule, hand.schedule) AS schedule,
       coalesce(j.cron_job_id, hand.jobid) AS cron_job_id,
       j.chunk_rows,
       j.max_retries,
       j.retry_delay,
       j.keep_runs,
       j.watermark,
       j.scored_model_id,
       last.run_id AS last_run_id,
       last.started_at AS last_run_at,
       last.status AS last_status,
       last.rows_scored AS last_rows_scored,
       last.error AS last_error,
       j.created_at,
       -- the pg_cron entry that runs it: pgmodels', or one made by hand here (its schedule and
       -- id above), or, from another database, where pg_cron runs it from
       CASE WHEN j.cron_job_id IS NOT NULL THEN pg_catalog.format('pg_cron job %s in this database', j.cron_job_id)
            WHEN hand.jobid IS NOT NULL
            THEN pg_catalog.format('pg_cron job %s%s in this database, scheduled by hand, as role %s%s', hand.jobid,
                                   ' "' || hand.jobname || '"', hand.username,
                                   CASE WHEN NOT hand.active THEN ' (inactive)' ELSE '' END)
            WHEN by_cron.last_at IS NOT NULL AND hand.cron_database <> pg_catalog.current_database()
            THEN pg_catalog.format('pg_cron runs it from database "%s" (last at %s); its entry is there: '
                                   'SELECT * FROM cron.job WHERE database = %L AND command LIKE %L',
                                   hand.cron_database, by_cron.last_at,
                                   pg_catalog.current_database(),
                                   '%run_batch_job(' || pg_catalog.quote_literal(j.name) || '%')
       END AS cron_entry
FROM pgmodels.batch_job j
JOIN pgmodels.projects p ON p.id = j.project_id
LEFT JOIN LATERAL (SELECT r.run_id, r.started_at, r.status, r.rows_scored, r.error FROM pgmodels.batch_runs r
                    WHERE r.job = j.name AND r.status <> 'skipped' ORDER BY r.run_id DESC LIMIT 1) last ON true
LEFT JOIN LATERAL (SELECT e.* FROM pgmodels._cron_entry(pgmodels._credential(), j.id) e
                    WHERE j.cron_job_id IS NULL) hand ON true
LEFT JOIN LATERAL (SELECT pg_catalog.max(r.started_at) AS last_at FROM pgmodels.batch_run r
                    WHERE r.job_id = j.id AND r.triggered_by = 'pg_cron') by_cron ON true
WHERE pg_catalog.pg_has_role(pgmodels._me(), j.owner, 'USAGE');
COMMENT ON VIEW pgmodels.batch_jobs IS 'one row per batch job the current role owns: project, source, output, schedule and the pg_cron entry that runs it (pgmodels'' own, or one made by hand), watermark, and its last run (not counting skipped ones)';
GRANT SELECT ON pgmodels.batch_jobs TO PUBLIC;
