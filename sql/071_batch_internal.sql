-- Batch jobs: the definer functions that write the catalog. The user's functions
-- (072) run as the caller, so that they read the source and create the output table
-- with the caller's rights, and pass a credential (pgmodels._credential()) that these
-- check; what these trust comes from the catalog and from the verified role, never
-- from the caller's arguments alone.

-- The tuning a job takes, checked before the catalog's constraints would be.
CREATE OR REPLACE FUNCTION pgmodels._batch_check_settings(chunk_rows integer, max_retries integer,
                                                          retry_delay interval, keep_runs interval)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF chunk_rows IS NOT NULL AND NOT chunk_rows BETWEEN 1 AND 1000000 THEN
        RAISE EXCEPTION 'chunk_rows must be between 1 and 1000000, got %', chunk_rows USING ERRCODE = '22023',
            DETAIL = 'A run commits after every chunk; a killed run loses at most one chunk''s work.';
    ELSIF max_retries IS NOT NULL AND NOT max_retries BETWEEN 0 AND 100 THEN
        RAISE EXCEPTION 'max_retries must be between 0 and 100, got %', max_retries USING ERRCODE = '22023';
    ELSIF retry_delay IS NOT NULL AND NOT (retry_delay >= '0'::interval AND retry_delay <= '1 hour'::interval) THEN
        RAISE EXCEPTION 'retry_delay must be between 0 and 1 hour, got %', retry_delay USING ERRCODE = '22023';
    ELSIF keep_runs IS NOT NULL AND keep_runs < '1 minute'::interval THEN
        RAISE EXCEPTION 'keep_runs must be at least 1 minute, got %', keep_runs USING ERRCODE = '22023';
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._batch_check_settings(integer, integer, interval, interval) IS 'internal: checks a batch job''s chunk size, retries and history retention';

CREATE OR REPLACE FUNCTION pgmodels._batch_create(credential text, job_name text, project_name text, source oid,
                                                  key_column name, output oid, incremental_column name,
                                                  outputs text[], chunk_rows integer, schedule text,
                                                  max_retries integer, retry_delay interval, keep_runs interval)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    proj pgmodels.projects;
    other text;
    job_id bigint;
    entry bigint;
BEGIN
    PERFORM pgmodels._require_grant(caller, 'create_batch_job(text, text, text, text, text, text, text, text[], integer, integer, interval, interval)',
                                    'create_batch_job', 'may schedule scoring');
    PERFORM pgmodels._batch_check_settings(chunk_rows, max_retries, retry_delay, keep_runs);
    PERFORM pgmodels._check_name('batch job', job_name);
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.name = project_name;
    IF proj.id IS NULL THEN
        RAISE EXCEPTION 'project "%" does not exist', project_name USING ERRCODE = '42704';
    ELSIF NOT pgmodels._may(caller, proj.id, 'predict') THEN
        RAISE EXCEPTION 'permission denied for project "%"', project_name USING ERRCODE = '42501',
            DETAIL = format('Role "%s" has no predict privilege on it.', caller::regrole);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = source AND c.relkind IN ('r', 'p', 'v', 'm', 'f'))
       OR NOT has_column_privilege(caller, source, key_column, 'SELECT')
       OR (incremental_column IS NOT NULL AND NOT has_column_privilege(caller, source, incremental_column, 'SELECT')) THEN
        RAISE EXCEPTION 'permission denied for relation %', source::regclass USING ERRCODE = '42501',
            DETAIL = 'A batch job reads its source with the rights of the role that creates it.';
    END IF;
    -- every column the deployed model reads (array features are read whole)
    IF EXISTS (SELECT 1 FROM unnest((pgmodels._resolve(project_name, 0, caller, 'predict')).feature_names) f
                WHERE NOT has_column_privilege(caller, source, regexp_replace(f, '\[[0-9]+\]$', ''), 'SELECT')) THEN
        RAISE EXCEPTION 'permission denied for relation %', source::regclass USING ERRCODE = '42501',
            DETAIL = 'A batch job reads its source''s feature columns with the rights of the role that creates it.';
    END IF;
    IF output = source OR NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = output AND c.relkind IN ('r', 'p')
                                         AND pg_has_role(caller, c.relowner, 'USAGE')) THEN
        RAISE EXCEPTION 'must be owner of table %', output::regclass USING ERRCODE = '42501',
            DETAIL = 'A batch job writes only an output table of its own role.';
    END IF;
    IF EXISTS (SELECT 1 FROM pgmodels.batch_job j WHERE j.name = job_name) THEN
        RAISE EXCEPTION 'batch job "%" already exists', job_name USING ERRCODE = '42710',
            HINT = 'Pick another name, or drop_batch_job() the old one first.';
    END IF;
    SELECT j.name INTO other FROM pgmodels.batch_job j WHERE j.output = _batch_create.output;
    IF other IS NOT NULL THEN
        RAISE EXCEPTION 'table % is already the output of batch job "%"', output::regclass, other
            USING ERRCODE = '42710', HINT = 'Give each job an output table of its own.';
    END IF;
    INSERT INTO pgmodels.batch_job (name, owner, project_id, source, key_column, output, incremental_column, outputs,
                                    chunk_rows, max_retries, retry_delay, keep_runs)
    VALUES (job_name, caller::regrole, proj.id, source, key_column, output, incremental_column, outputs,
            chunk_rows, max_retries, retry_delay, keep_runs)
    RETURNING id INTO job_id;
    IF schedule IS NOT NULL THEN
        entry := pgmodels._batch_schedule(job_id, schedule);
    END IF;
    RETURN job_id;
END
$$;
COMMENT ON FUNCTION pgmodels._batch_create(text, text, text, oid, name, oid, name, text[], integer, text, integer, interval, interval) IS 'internal: the core of create_batch_job() (definer: it writes the catalog and schedules with pg_cron as the verified caller)';

-- A job's pg_cron entry: unique in the cluster (pg_cron keys entries by name and role,
-- and replaces an entry of the same name), and the same for the same job name.
CREATE OR REPLACE FUNCTION pgmodels._batch_cron_name(job_name text) RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT format('pgmodels_batch:%s:%s', (SELECT d.oid FROM pg_catalog.pg_database d
                                             WHERE d.datname = pg_catalog.current_database()),
                  pg_catalog.left(pg_catalog.md5($1), 20))
$$;
COMMENT ON FUNCTION pgmodels._batch_cron_name(text) IS 'internal: the name of a batch job''s pg_cron entry';

-- Schedules a job's run with pg_cron, as the job's owner. The entry's name is unique in
-- the cluster (pg_cron replaces an entry of the same name and role).
CREATE OR REPLACE FUNCTION pgmodels._batch_schedule(job_id bigint, schedule text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job pgmodels.batch_job;
    entry bigint;
BEGIN
    SELECT j.* INTO STRICT job FROM pgmodels.batch_job j WHERE j.id = job_id FOR UPDATE;
    PERFORM pgmodels._cron_unschedule(job.cron_job_id);
    entry := pgmodels._cron_schedule(pgmodels._batch_cron_name(job.name),
                                     schedule, format('CALL %I.run_batch_job(%L::text)', '@extschema@', job.name), job.owner);
    UPDATE pgmodels.batch_job j SET schedule = _batch_schedule.schedule, cron_job_id = entry WHERE j.id = job.id;
    RETURN entry;
END
$$;
COMMENT ON FUNCTION pgmodels._batch_schedule(bigint, text) IS 'internal: (re)schedules a batch job with pg_cron as its owner; not for PUBLIC';

-- The job a caller may act on. For a run, the caller must be the job's owner itself: a
-- run reads and writes with exactly its owner's rights. To alter or drop, a member of
-- the owner will do, as for tables.
CREATE OR REPLACE FUNCTION pgmodels._batch_owned(credential text, job_name text, to_run boolean)
RETURNS pgmodels.batch_job
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    job pgmodels.batch_job;
BEGIN
    SELECT j.* INTO job FROM pgmodels.batch_job j WHERE j.name = job_name;
    IF job.id IS NULL THEN
        RAISE EXCEPTION 'batch job "%" does not exist', job_name USING ERRCODE = '42704',
            HINT = 'See pgmodels.batch_jobs for the jobs you own.';
    END IF;
    IF to_run AND caller <> job.owner THEN
        RAISE EXCEPTION 'batch job "%" runs as role "%"', job_name, job.owner USING ERRCODE = '42501',
            DETAIL = 'A job reads and writes with the rights of the role that created it, and runs only as that role.',
            HINT = format('Log in as role "%s" to run it, or let pg_cron run it (a SET ROLE from a more privileged session would let the job''s code RESET ROLE).', job.owner);
    ELSIF NOT to_run AND NOT pg_has_role(caller, job.owner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of batch job "%"', job_name USING ERRCODE = '42501',
            DETAIL = format('Batch job "%s" belongs to role "%s".', job_name, job.owner);
    END IF;
    RETURN job;
END
$$;
COMMENT ON FUNCTION pgmodels._batch_owned(text, text, boolean) IS 'internal: a batch job its caller owns (to run it: is), or an error';

CREATE OR REPLACE FUNCTION pgmodels._batch_alter(credential text, job_name text, schedule text, unschedule boolean,
                                                 chunk_rows integer, max_retries integer, retry_delay interval,
                                                 keep_runs interval)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job pgmodels.batch_job := pgmodels._batch_owned(credential, job_name, false);
BEGIN
    PERFORM pgmodels._require_grant(pgmodels._verify_caller(credential), 'alter_batch_job(text, text, integer, integer, interval, interval, boolean)',
                                    'alter_batch_job', 'may schedule scoring');
    IF schedule IS NOT NULL AND unschedule THEN
        RAISE EXCEPTION 'a schedule and unschedule => true contradict each other' USING ERRCODE = '22023';
    END IF;
    PERFORM pgmodels._batch_check_settings(chunk_rows, max_retries, retry_delay, keep_runs);
    UPDATE pgmodels.batch_job j
       SET chunk_rows = coalesce(_batch_alter.chunk_rows, j.chunk_rows),
           max_retries = coalesce(_batch_alter.max_retries, j.max_retries),
           retry_delay = coalesce(_batch_alter.retry_delay, j.retry_delay),
           keep_runs = coalesce(_batch_alter.keep_runs, j.keep_runs)
     WHERE j.id = job.id;
    IF unschedule THEN
        PERFORM pgmodels._cron_unschedule(job.cron_job_id);
        UPDATE pgmodels.batch_job j SET schedule = NULL, cron_job_id = NULL WHERE j.id = job.id;
    ELSIF schedule IS NOT NULL THEN
        PERFORM pgmodels._batch_schedule(job.id, schedule);
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._batch_alter(text, text, text, boolean, integer, integer, interval, interval) IS 'internal: the core of alter_batch_job() (definer: it writes the catalog and pg_cron''s)';

CREATE OR REPLACE FUNCTION pgmodels._batch_drop(credential text, job_name text) RETURNS regclass
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job pgmodels.batch_job := pgmodels._batch_owned(credential, job_name, false);
BEGIN
    PERFORM pgmodels._cron_unschedule(job.cron_job_id);
    DELETE FROM pgmodels.batch_job j WHERE j.id = job.id;
    RETURN job.output;
END
$$;
COMMENT ON FUNCTION pgmodels._batch_drop(text, text) IS 'internal: the core of drop_batch_job(): unschedules and forgets a job, returns its output table';

-- A run's record. A run claims its job (runner_pid, runner_start, committed with the
-- run's first commit); while that backend lives, any other run of the job is recorded
-- as skipped. A 'running' run whose backend is gone was interrupted: it is marked failed.
-- Nobody but a run of the job's owner can claim a job, so no other role can block it.
CREATE OR REPLACE FUNCTION pgmodels._batch_run_begin(credential text, job_name text, status text, mode text,
                                                     resumed_from bigint, attempt integer, triggered_by text,
                                                     model_id bigint, model_version integer, low_watermark text,
                                                     high_watermark text, cursor_key text, cursor_value text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job pgmodels.batch_job := pgmodels._batch_owned(credential, job_name, true);
    me timestamptz := (SELECT a.backend_start FROM pg_stat_activity a WHERE a.pid = pg_backend_pid());
    run_id bigint;
BEGIN
    IF status = 'claim' THEN  -- a run starting: claim the job, or be skipped
        UPDATE pgmodels.batch_job j SET runner_pid = pg_backend_pid(), runner_start = me
         WHERE j.id = job.id AND (j.runner_pid IS NULL OR (j.runner_pid, j.runner_start) = (pg_backend_pid(), me)
                                  OR NOT pgmodels._backend_alive(j.runner_pid, j.runner_start));
        IF NOT FOUND THEN
            status := 'skipped';
        ELSE
            RETURN NULL;
        END IF;
    ELSIF status = 'running' THEN
        IF job.runner_pid IS DISTINCT FROM pg_backend_pid() OR job.runner_start IS DISTINCT FROM me THEN
            RAISE EXCEPTION 'batch job "%" is not claimed by this session', job_name USING ERRCODE = '55000';
        END IF;
        UPDATE pgmodels.batch_run r
           SET status = 'failed', finished_at = coalesce(r.finished_at, now()),
               error = 'the run was interrupted: its backend ended before it finished', error_sqlstate = '57P01'
         WHERE r.job_id = job.id AND r.status = 'running';
    ELSIF status <> 'skipped' THEN
        RAISE EXCEPTION 'a run begins as claim, running or skipped' USING ERRCODE = '22023';
    END IF;
    INSERT INTO pgmodels.batch_run (job_id, status, mode, resumed_from, attempt, triggered_by, model_id, model_version,
                                    low_watermark, high_watermark, cursor_key, cursor_value, pid, backend_start,
                                    finished_at, error)
    VALUES (job.id, status, mode, resumed_from, attempt, triggered_by, model_id, model_version, low_watermark,
            high_watermark, cursor_key, cursor_value, pg_backend_pid(), me,
            CASE WHEN status = 'skipped' THEN clock_timestamp() END,
            CASE WHEN status = 'skipped' THEN 'another run of the job was still running' END)
    RETURNING id INTO run_id;
    RETURN run_id;
END
$$;
COMMENT ON FUNCTION pgmodels._batch_run_begin(text, text, text, text, bigint, integer, text, bigint, integer, text, text, text, text) IS 'internal: claims a batch job for this session''s run (or records a skipped run), and records a run''s start, for the job''s owner';

-- Lets go of a job this session claimed (at the end of a run, whatever its outcome).
CREATE OR REPLACE FUNCTION pgmodels._batch_release(credential text, job_name text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job pgmodels.batch_job := pgmodels._batch_owned(credential, job_name, true);
BEGIN
    UPDATE pgmodels.batch_job j SET runner_pid = NULL, runner_start = NULL
     WHERE j.id = job.id AND j.runner_pid = pg_backend_pid();
END
$$;
COMMENT ON FUNCTION pgmodels._batch_release(text, text) IS 'internal: ends this session''s claim on a batch job';

CREATE OR REPLACE FUNCTION pgmodels._batch_run_chunk(credential text, run_id bigint, scored bigint, cursor_key text,
                                                     cursor_value text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE pgmodels.batch_run r
       SET rows_scored = r.rows_scored + scored, chunks = r.chunks + 1,
           cursor_key = _batch_run_chunk.cursor_key, cursor_value = _batch_run_chunk.cursor_value
      FROM pgmodels.batch_job j
     WHERE r.id = run_id AND j.id = r.job_id AND r.status = 'running' AND r.pid = pg_backend_pid()
       AND j.owner = pgmodels._verify_caller(credential);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'batch run % is not running in this session', run_id USING ERRCODE = '55000';
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._batch_run_chunk(text, bigint, bigint, text, text) IS 'internal: records a committed chunk of a running batch run';

CREATE OR REPLACE FUNCTION pgmodels._batch_run_end(credential text, run_id bigint, status text, removed bigint,
                                                   error text, error_sqlstate text, error_detail text, error_hint text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    run pgmodels.batch_run;
    job pgmodels.batch_job;
BEGIN
    IF status NOT IN ('succeeded', 'failed') THEN
        RAISE EXCEPTION 'a run ends as succeeded or failed' USING ERRCODE = '22023';
    END IF;
    SELECT r.* INTO run FROM pgmodels.batch_run r JOIN pgmodels.batch_job j ON j.id = r.job_id
     WHERE r.id = run_id AND r.status = 'running' AND r.pid = pg_backend_pid()
       AND j.owner = pgmodels._verify_caller(credential)
       FOR UPDATE OF r;
    IF run.id IS NULL THEN
        RAISE EXCEPTION 'batch run % is not running in this session', run_id USING ERRCODE = '55000';
    END IF;
    UPDATE pgmodels.batch_run r
       SET status = _batch_run_end.status, finished_at = clock_timestamp(), rows_removed = coalesce(removed, 0),
           error = _batch_run_end.error, error_sqlstate = _batch_run_end.error_sqlstate,
           error_detail = _batch_run_end.error_detail, error_hint = _batch_run_end.error_hint
     WHERE r.id = run.id;
    IF status = 'succeeded' THEN
        UPDATE pgmodels.batch_job j
           SET scored_model_id = CASE WHEN run.mode = 'full' THEN run.model_id ELSE j.scored_model_id END,
               watermark = coalesce(run.high_watermark, j.watermark)
         WHERE j.id = run.job_id
        RETURNING j.* INTO job;
    ELSE
        SELECT j.* INTO job FROM pgmodels.batch_job j WHERE j.id = run.job_id;
    END IF;
    -- bounded history: ours and pg_cron's, keeping the newest run whatever its age
    DELETE FROM pgmodels.batch_run r
     WHERE r.job_id = job.id AND r.id < run.id AND r.started_at < now() - job.keep_runs;
    PERFORM pgmodels._cron_prune(job.cron_job_id, job.keep_runs);
END
$$;
COMMENT ON FUNCTION pgmodels._batch_run_end(text, bigint, text, bigint, text, text, text, text) IS 'internal: records how a batch run ended, moves the job''s watermark after a success and prunes old history (ours and pg_cron''s)';
