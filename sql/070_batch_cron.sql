-- The functions and views of 070_batch_catalog.sql (created once: tables and types), which
-- every upgrade replays (CREATE OR REPLACE).

-- Whether a backend is still the one that started at that time (pids are reused).
-- Definer: pg_stat_activity hides other roles' backend_start.
CREATE OR REPLACE FUNCTION pgmodels._backend_alive(pid integer, backend_start timestamptz) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = $1 AND a.backend_start = $2)
$$;
COMMENT ON FUNCTION pgmodels._backend_alive(integer, timestamptz) IS 'internal: whether the backend with this pid is still the one that started at this time';

-- Whether pg_cron is installed in this database. pg_cron lives in one database of a
-- cluster (cron.database_name); in every other one the name "cron" is free, and a role
-- that may create schemas there could make a schema cron of its own, with a function
-- cron.schedule_in_database or a table cron.job: the definer functions below would run
-- its code as the extension's owner. So schema cron counts only when it is pg_cron's own:
-- a member of the extension pg_cron (which only a superuser installs, and adds to).
CREATE OR REPLACE FUNCTION pgmodels._cron_here() RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n
                     JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
                      AND d.objid = n.oid AND d.deptype = 'e'
                     JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_cron'
                    WHERE n.nspname = 'cron')
$$;
COMMENT ON FUNCTION pgmodels._cron_here() IS 'internal: whether pg_cron is installed in this database (schema cron is the extension pg_cron''s, not a schema someone made)';

-- The one helper over pg_cron, which runs each job's command in the database and as the
-- role its entry names. Definer, so that a role needs no privilege on pg_cron's schema:
-- the entry it makes is always for a role the caller verified (never taken from a user)
-- and a command the caller built. Not for PUBLIC.
CREATE OR REPLACE FUNCTION pgmodels._cron_schedule(entry_name text, schedule text, command text, role_oid oid)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cron_db text := current_setting('cron.database_name', true);
    here text := current_database();
    entry bigint;
    message text;
BEGIN
    IF NOT pgmodels._cron_here() OR to_regproc('cron.schedule_in_database') IS NULL THEN
        IF cron_db IS NULL THEN
            RAISE EXCEPTION 'pg_cron is not installed'
                USING ERRCODE = '55000',
                      DETAIL = 'A schedule needs pg_cron, which this server does not load.',
                      HINT = 'Add pg_cron to shared_preload_libraries, restart, run CREATE EXTENSION pg_cron in the database cron.database_name names, or create the job without a schedule and CALL run_batch_job() from your own scheduler.';
        END IF;
        IF cron_db = here THEN
            RAISE EXCEPTION 'pg_cron is not installed in database "%"', here
                USING ERRCODE = '55000',
                      HINT = 'A superuser runs CREATE EXTENSION pg_cron here.';
        END IF;
        RAISE EXCEPTION 'pg_cron runs in database "%", not in "%"', cron_db, here
            USING ERRCODE = '55000',
                  DETAIL = 'pg_cron keeps its jobs in one database of the cluster (cron.database_name), and schedules from there only.',
                  HINT = format('Create the job here without a schedule; then a superuser schedules it from database "%s" with: SELECT cron.schedule_in_database(%L, %L, %L, %L, %L); or set cron.database_name to "%s" if this is the only database with jobs.',
                                cron_db, entry_name, coalesce(schedule, '*/5 * * * *'), command, here,
                                role_oid::regrole::text, here);
    END IF;
    IF schedule IS NULL OR btrim(schedule) = '' THEN
        RAISE EXCEPTION 'invalid cron schedule ""' USING ERRCODE = '22023',
            HINT = 'Use cron syntax: five fields (minute hour day month weekday), for example ''*/5 * * * *''.';
    END IF;
    BEGIN
        entry := cron.schedule_in_database(entry_name, schedule, command, here, role_oid::regrole::text, true);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS message = MESSAGE_TEXT;
        IF message LIKE 'invalid schedule%' THEN
            RAISE EXCEPTION 'invalid cron schedule "%"', schedule USING ERRCODE = '22023',
                DETAIL = format('pg_cron %s refused it: %s.', (SELECT e.extversion FROM pg_extension e WHERE e.extname = 'pg_cron'), message),
                HINT = 'Use cron syntax: five fields (minute hour day month weekday), for example ''*/5 * * * *''; pg_cron 1.4 schedules to the minute, pg_cron 1.5 and later also take ''30 seconds''.';
        END IF;
        RAISE;
    END;
    RETURN entry;
END
$$;
COMMENT ON FUNCTION pgmodels._cron_schedule(text, text, text, oid) IS 'internal: registers a command with pg_cron, to run in this database as the given role (definer: the role needs no rights on pg_cron); not for PUBLIC';

CREATE OR REPLACE FUNCTION pgmodels._cron_unschedule(entry bigint) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- nested, so that nothing names pg_cron's schema where it is not installed (nor a
    -- schema cron someone made: pgmodels._cron_here)
    IF entry IS NOT NULL AND pgmodels._cron_here() AND to_regclass('cron.job') IS NOT NULL THEN
        IF EXISTS (SELECT 1 FROM cron.job j WHERE j.jobid = entry) THEN
            PERFORM cron.unschedule(entry);
        END IF;
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._cron_unschedule(bigint) IS 'internal: removes a pg_cron entry, if it is still there; not for PUBLIC';

-- pg_cron never purges cron.job_run_details; this purges the rows of one entry.
CREATE OR REPLACE FUNCTION pgmodels._cron_prune(entry bigint, keep interval) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF entry IS NOT NULL AND pgmodels._cron_here() AND to_regclass('cron.job_run_details') IS NOT NULL THEN
        IF true THEN  -- planned only when pg_cron is installed here
            DELETE FROM cron.job_run_details d WHERE d.jobid = entry AND d.end_time < now() - keep;
        END IF;
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._cron_prune(bigint, interval) IS 'internal: deletes a pg_cron entry''s run details older than keep (pg_cron keeps them forever); not for PUBLIC';

-- The pg_cron entry that runs a batch job scheduled by hand (with cron.schedule, or with
-- cron.schedule_in_database as _cron_schedule's hint says): in this database's cron.job,
-- the entry for this database whose command calls run_batch_job on the job, the active
-- one first; and pg_cron's database (cron.database_name). pg_cron keeps its entries in
-- that one database only: elsewhere there is no cron.job to read, and pgmodels.batch_jobs
-- says where pg_cron runs the job from once a run by it is seen. Definer: cron.job is
-- pg_cron's, and each role sees only its own entries there (the job's entry may be a
-- superuser's); it answers only for a job the caller owns (a credential says who), and
-- reads cron.job only where schema cron is pg_cron's own (_cron_here). It evaluates
-- nothing of a role's: the job's name goes into a built-in format().
CREATE OR REPLACE FUNCTION pgmodels._cron_entry(credential text, job_id bigint, OUT jobid bigint, OUT jobname text,
                                               OUT schedule text, OUT username text, OUT active boolean,
                                               OUT cron_database text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    job_name text;
BEGIN
    SELECT j.name INTO job_name FROM pgmodels.batch_job j WHERE j.id = job_id AND pg_has_role(caller, j.owner, 'USAGE');
    IF job_name IS NULL THEN
        RETURN;
    END IF;
    cron_database := current_setting('cron.database_name', true);
    IF pgmodels._cron_here() AND to_regclass('cron.job') IS NOT NULL THEN
        IF true THEN  -- planned only when pg_cron is installed here
            SELECT e.jobid, e.jobname, e.schedule, e.username, e.active
              INTO jobid, jobname, schedule, username, active
              FROM cron.job e
             WHERE e.database = current_database() AND strpos(e.command, format('run_batch_job(%L', job_name)) > 0
             ORDER BY e.active DESC, e.jobid
             LIMIT 1;
        END IF;
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._cron_entry(text, bigint) IS 'internal: the pg_cron entry in this database that runs a batch job its caller owns (scheduled by hand), and pg_cron''s database';
