-- Monitoring, the user's side: drift(), set_reference(), set_monitor_thresholds(),
-- monitor(), run_monitor(), drop_monitor(), model_lineage(); and the definer functions
-- that write monitors and reports for a verified caller. See 100_monitor_catalog.sql.

-- A monitor, checked and scheduled. Definer: it writes the catalog and schedules with
-- pg_cron as the verified caller. It trusts nothing it is handed: the caller needs
-- EXECUTE on monitor() (an administrator's grant, like create_batch_job), the project's
-- ownership (its reports become part of the project's record, which every role that may
-- use the project reads), SELECT on the relation (and EXECUTE on train() for retrain,
-- which train() checks at each retrain).
CREATE OR REPLACE FUNCTION pgmodels._monitor_create(credential text, project_name text, relation oid,
                                                    time_column text, schedule text, retrain boolean)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    proj pgmodels.projects;
    mon pgmodels.monitor;
    entry bigint;
BEGIN
    PERFORM pgmodels._require_grant(caller, 'monitor(text, text, text, text, boolean)', 'monitor',
                                    'may schedule drift monitors');
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.name = project_name;
    IF proj.id IS NULL THEN
        RAISE EXCEPTION 'project "%" does not exist', project_name USING ERRCODE = '42704';
    END IF;
    PERFORM pgmodels._require_owner(caller, proj);
    IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = relation AND c.relkind IN ('r', 'p', 'v', 'm', 'f'))
       OR NOT has_table_privilege(caller, relation, 'SELECT')
          AND NOT has_any_column_privilege(caller, relation, 'SELECT') THEN
        RAISE EXCEPTION 'permission denied for relation %', relation::regclass USING ERRCODE = '42501',
            DETAIL = 'A monitor reads its relation with the rights of the role that creates it.';
    END IF;
    IF time_column IS NOT NULL AND NOT has_column_privilege(caller, relation, time_column, 'SELECT') THEN
        RAISE EXCEPTION 'permission denied for relation %', relation::regclass USING ERRCODE = '42501';
    END IF;
    IF schedule IS NOT NULL AND (btrim(schedule) = '' OR length(schedule) > 100) THEN
        RAISE EXCEPTION 'invalid cron schedule "%"', schedule USING ERRCODE = '22023',
            HINT = 'Use a five-field cron expression such as ''*/5 * * * *'', or NULL to run the monitor by hand.';
    END IF;
    SELECT m.* INTO mon FROM pgmodels.monitor m WHERE m.project_id = proj.id AND m.relation = $3 FOR UPDATE;
    IF mon.id IS NOT NULL THEN
        IF NOT pg_has_role(caller, mon.owner, 'USAGE') THEN
            RAISE EXCEPTION 'project "%" is already monitored on relation % by role "%"', project_name,
                relation::regclass, mon.owner USING ERRCODE = '42710',
                HINT = 'Its owner can drop_monitor() it.';
        END IF;
        PERFORM pgmodels._cron_unschedule(mon.cron_job_id);
        UPDATE pgmodels.monitor m SET time_column = $4, schedule = $5, retrain = $6, cron_job_id = NULL, owner = caller::regrole
         WHERE m.id = mon.id;
    ELSE
        INSERT INTO pgmodels.monitor (project_id, owner, relation, time_column, schedule, retrain)
        VALUES (proj.id, caller::regrole, $3, $4, $5, $6) RETURNING * INTO mon;
    END IF;
    IF schedule IS NOT NULL THEN
        entry := pgmodels._cron_schedule(
            format('pgmodels_monitor:%s:%s', (SELECT d.oid FROM pg_database d WHERE d.datname = current_database()), mon.id),
            schedule, format('SELECT %I.run_monitor(%s::bigint)', '@extschema@', mon.id), caller);
        UPDATE pgmodels.monitor m SET cron_job_id = entry WHERE m.id = mon.id;
    END IF;
    RETURN mon.id;
END
$$;
COMMENT ON FUNCTION pgmodels._monitor_create(text, text, oid, text, text, boolean) IS 'internal: the core of monitor() (definer: it writes the catalog and schedules with pg_cron as the verified caller)';

-- A monitor, for the role that owns it (itself, not a member): what a run needs.
CREATE OR REPLACE FUNCTION pgmodels._monitor_get(credential text, monitor_id bigint)
RETURNS TABLE (project text, relation oid, time_column text, retrain boolean, last_window_end timestamptz,
               now timestamptz, retrain_with jsonb)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    mon pgmodels.monitor;
BEGIN
    -- locked until the run's transaction ends: a second run of the monitor waits, then
    -- starts where this one's window ended
    SELECT m.* INTO mon FROM pgmodels.monitor m WHERE m.id = monitor_id FOR UPDATE;
    IF mon.id IS NULL THEN
        RAISE EXCEPTION 'monitor % does not exist', monitor_id USING ERRCODE = '42704',
            HINT = 'See pgmodels.monitors for the monitors there are.';
    ELSIF NOT pg_has_role(caller, mon.owner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of monitor %', monitor_id USING ERRCODE = '42501',
            DETAIL = format('It runs as role "%s", with that role''s rights.', mon.owner);
    ELSIF caller <> mon.owner THEN
        -- a run reads the owner's relation (a view's functions, casts of the types it made)
        -- with the rights of the role that runs it: only the owner itself, as pg_cron does
        RAISE EXCEPTION 'monitor % runs as role "%"', monitor_id, mon.owner USING ERRCODE = '42501',
            DETAIL = 'A run reads its relation with exactly its owner''s rights, and runs only as that role: another role''s rights would run code the owner wrote (a view''s functions, a cast of a type it made) with them.',
            HINT = format('Log in as role "%s" to run it, or let pg_cron run it on its schedule.', mon.owner);
    END IF;
    RETURN QUERY SELECT p.name, mon.relation::oid, mon.time_column::text, mon.retrain, mon.last_window_end,
                        statement_timestamp(), mon.retrain_with
                   FROM pgmodels.projects p WHERE p.id = mon.project_id;
END
$$;
COMMENT ON FUNCTION pgmodels._monitor_get(text, bigint) IS 'internal: a monitor''s settings, locked for a run, for its owner (definer: the catalog is not readable by PUBLIC)';

-- A report, written for the monitor's owner; NOTIFY on drift.
CREATE OR REPLACE FUNCTION pgmodels._drift_report_write(credential text, monitor_id bigint, model_id bigint,
    window_start timestamptz, window_end timestamptz, rows bigint, status text, drifted text[], features jsonb,
    thresholds jsonb)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    mon pgmodels.monitor;
    model pgmodels.models;
    report_id bigint;
BEGIN
    SELECT m.* INTO mon FROM pgmodels.monitor m WHERE m.id = monitor_id FOR UPDATE;
    IF mon.id IS NULL OR NOT pg_has_role(caller, mon.owner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of monitor %', monitor_id USING ERRCODE = '42501';
    END IF;
    SELECT m.* INTO model FROM pgmodels.models m WHERE m.id = $3 AND m.project_id = mon.project_id;
    IF model.id IS NULL OR NOT pgmodels._valid_drift_report(features, model.feature_names, status, drifted, rows)
       OR window_start > window_end THEN
        RAISE EXCEPTION 'invalid drift report' USING ERRCODE = '22023',
            DETAIL = 'A report names the monitor''s project''s model, one entry per feature with its metrics, and a status and drifted features that agree with them.';
    END IF;
    INSERT INTO pgmodels.drift_report (project_id, monitor_id, model_id, model_version, relation, time_column,
                                       window_start, window_end, rows, status, drifted, features, thresholds,
                                       created_by)
    VALUES (mon.project_id, mon.id, model.id, model.version, mon.relation::text, mon.time_column, $4, $5, $6, $7,
            coalesce($8, '{}'), $9, $10, caller::regrole::text)
    RETURNING id INTO report_id;
    IF mon.time_column IS NOT NULL THEN
        UPDATE pgmodels.monitor m SET last_window_end = $5 WHERE m.id = mon.id;
    END IF;
    IF status = 'drift' THEN
        PERFORM pg_notify('pgmodels_drift', json_build_object('project', (SELECT p.name FROM pgmodels.projects p
                                                                          WHERE p.id = mon.project_id),
                                                             'report_id', report_id, 'status', status)::text);
    END IF;
    RETURN report_id;
END
$$;
COMMENT ON FUNCTION pgmodels._drift_report_write(text, bigint, bigint, timestamptz, timestamptz, bigint, text, text[], jsonb, jsonb) IS 'internal: writes a monitor''s report for its verified owner and notifies channel pgmodels_drift on drift';

-- A retrain decision, recorded once on the report that caused it, for the owner of a
-- retraining monitor who owns its project. Checked against the catalog: the new model is
-- the one trained after this report, and "deployed" is what the deployments say.
CREATE OR REPLACE FUNCTION pgmodels._drift_report_decide(credential text, report_id bigint, decision jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    r pgmodels.drift_report;
    mon pgmodels.monitor;
    new_model pgmodels.models;
    current_id bigint;
BEGIN
    SELECT x.* INTO r FROM pgmodels.drift_report x WHERE x.id = report_id FOR UPDATE;
    SELECT m.* INTO mon FROM pgmodels.monitor m WHERE m.id = r.monitor_id;
    IF r.id IS NULL OR mon.id IS NULL OR NOT mon.retrain OR r.retrain IS NOT NULL
       OR NOT pg_has_role(caller, mon.owner, 'USAGE') OR NOT pgmodels._may(caller, r.project_id, 'owner') THEN
        RAISE EXCEPTION 'must be owner of the retraining monitor of drift report %', report_id USING ERRCODE = '42501';
    END IF;
    IF jsonb_typeof(decision) IS DISTINCT FROM 'object' OR jsonb_typeof(decision -> 'deployed') IS DISTINCT FROM 'boolean'
       OR length(decision::text) > 20000
       OR EXISTS (SELECT 1 FROM jsonb_each(decision) e
                   WHERE CASE WHEN e.key IN ('new_model_id', 'new_version', 'deployed_model_id', 'deployed_version', 'holdout_rows',
                                             'excluded_rows')
                              THEN jsonb_typeof(e.value) <> 'number' OR (e.value)::text !~ '^[0-9]{1,18}$'
                              WHEN e.key IN ('deployed_score', 'new_score', 'margin')
                              THEN jsonb_typeof(e.value) NOT IN ('number', 'null')
                                   OR (jsonb_typeof(e.value) = 'number' AND abs((e.value)::text::numeric) > 1e300)
                              WHEN e.key IN ('reason', 'error', 'sqlstate', 'metric', 'holdout', 'algorithm')
                              THEN jsonb_typeof(e.value) NOT IN ('string', 'null')
                              WHEN e.key = 'drifted' THEN jsonb_typeof(e.value) <> 'array'
                              ELSE e.key <> 'deployed' END) THEN
        RAISE EXCEPTION 'invalid retrain decision' USING ERRCODE = '22023';
    END IF;
    IF decision ? 'new_model_id' THEN
        SELECT m.* INTO new_model FROM pgmodels.models m
         WHERE m.id = (decision ->> 'new_model_id')::bigint AND m.project_id = r.project_id
           AND m.training -> 'retrain' ->> 'drift_report_id' = r.id::text;
        SELECT d.model_id INTO current_id FROM pgmodels.deployments d WHERE d.project_id = r.project_id
         ORDER BY d.id DESC LIMIT 1;
        IF new_model.id IS NULL OR (decision ->> 'new_version')::integer IS DISTINCT FROM new_model.version
           OR (decision ->> 'deployed')::boolean <> (current_id = new_model.id) THEN
            RAISE EXCEPTION 'invalid retrain decision' USING ERRCODE = '22023',
                DETAIL = 'The new model must be the version trained after this report, and "deployed" what the deployments say.';
        END IF;
    ELSIF (decision ->> 'deployed')::boolean THEN
        RAISE EXCEPTION 'invalid retrain decision' USING ERRCODE = '22023';
    END IF;
    UPDATE pgmodels.drift_report x SET retrain = decision WHERE x.id = r.id;
END
$$;

-- Whether a report's content has the shape the views read: one object per feature of the
-- model (or the predictions), with a kind, a status, a row count and numbers or NULLs as
-- metrics, and a status and drifted list that agree with them.
CREATE OR REPLACE FUNCTION pgmodels._valid_drift_report(features jsonb, names text[], status text, drifted text[],
                                                        rows bigint)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
    f jsonb;
    k text;
    worst text := 'ok';
    flagged text[] := '{}';
BEGIN
    IF jsonb_typeof(features) IS DISTINCT FROM 'array' OR jsonb_array_length(features) > cardinality(names) + 1
       OR rows IS NULL OR rows < 0 OR status IS NULL THEN
        RETURN false;
    END IF;
    FOR f IN SELECT e FROM jsonb_array_elements(features) e LOOP
        IF jsonb_typeof(f) <> 'object' OR jsonb_typeof(f -> 'feature') IS DISTINCT FROM 'string'
           OR NOT (f ->> 'feature' = ANY (names) OR f ->> 'feature' = '(prediction)')
           OR coalesce(f ->> 'kind', '') NOT IN ('numeric', 'categorical', 'prediction')
           OR coalesce(f ->> 'status', '') NOT IN ('ok', 'warning', 'drift')
           OR jsonb_typeof(f -> 'rows') IS DISTINCT FROM 'number' OR (f -> 'rows')::text !~ '^[0-9]{1,18}$'
           OR length(f::text) > 100000 THEN
            RETURN false;
        END IF;
        FOREACH k IN ARRAY ARRAY['psi', 'ks_statistic', 'p_value', 'null_rate_change'] LOOP
            IF jsonb_typeof(f -> k) NOT IN ('number', 'null')
               OR (jsonb_typeof(f -> k) = 'number' AND abs((f ->> k)::numeric) > 1e300) THEN
                RETURN false;
            END IF;
        END LOOP;
        IF f ? 'shares' AND jsonb_typeof(f -> 'shares') NOT IN ('array', 'object', 'null') THEN
            RETURN false;
        END IF;
        IF f ->> 'status' = 'drift' THEN
            worst := 'drift';
            flagged := flagged || (f ->> 'feature');
        ELSIF f ->> 'status' = 'warning' AND worst = 'ok' THEN
            worst := 'warning';
        END IF;
    END LOOP;
    RETURN status = worst AND coalesce(drifted, '{}') = flagged;
END
$$;
COMMENT ON FUNCTION pgmodels._valid_drift_report(jsonb, text[], text, text[], bigint) IS 'internal: whether a drift report''s content has the shape its views read, and its status and drifted features agree with its metrics';
COMMENT ON FUNCTION pgmodels._drift_report_decide(text, bigint, jsonb) IS 'internal: records a retrain decision on a report, once, checked against the catalog, for the verified owner of the retraining monitor and its project';

-- A model's reference profile, from set_reference(): its project owner's.
CREATE OR REPLACE FUNCTION pgmodels._store_reference(credential text, model_id bigint, profile jsonb)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    proj pgmodels.projects;
BEGIN
    SELECT p.* INTO proj FROM pgmodels.models m JOIN pgmodels.projects p ON p.id = m.project_id WHERE m.id = model_id;
    IF proj.id IS NULL THEN
        RAISE EXCEPTION 'model % does not exist', model_id USING ERRCODE = '42704';
    END IF;
    PERFORM pgmodels._require_owner(caller, proj);
    IF jsonb_typeof(profile -> 'features') IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'invalid reference profile' USING ERRCODE = '22023';
    END IF;
    UPDATE pgmodels.models m SET training = m.training || jsonb_build_object('profile', profile) WHERE m.id = $2;
    RETURN true;
END
$$;
COMMENT ON FUNCTION pgmodels._store_reference(text, bigint, jsonb) IS 'internal: stores a model''s reference profile for its project''s verified owner';

CREATE OR REPLACE FUNCTION pgmodels._drop_monitor(credential text, monitor_id bigint) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    mon pgmodels.monitor;
BEGIN
    SELECT m.* INTO mon FROM pgmodels.monitor m WHERE m.id = monitor_id FOR UPDATE;
    IF mon.id IS NULL THEN
        RAISE EXCEPTION 'monitor % does not exist', monitor_id USING ERRCODE = '42704';
    ELSIF NOT pg_has_role(caller, mon.owner, 'USAGE')
          AND NOT pgmodels._may(caller, mon.project_id, 'owner') THEN
        RAISE EXCEPTION 'must be owner of monitor %', monitor_id USING ERRCODE = '42501',
            DETAIL = 'The role that created it, or the project''s owner, may drop it.';
    END IF;
    PERFORM pgmodels._cron_unschedule(mon.cron_job_id);
    DELETE FROM pgmodels.monitor m WHERE m.id = mon.id;
END
$$;
COMMENT ON FUNCTION pgmodels._drop_monitor(text, bigint) IS 'internal: the core of drop_monitor(): its owner''s or the project owner''s; the reports stay';

-- What a monitor's retrain trains when not what the deployed version was trained with:
-- its owner's (it runs as that role). Checked for shape here; the PL/Python core checks
-- the algorithm and hyperparameters first, and train() checks everything at each retrain.
-- Definer: it writes the catalog for the verified owner.
CREATE OR REPLACE FUNCTION pgmodels._monitor_retrain_with(credential text, monitor_id bigint, settings jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    mon pgmodels.monitor;
BEGIN
    SELECT m.* INTO mon FROM pgmodels.monitor m WHERE m.id = monitor_id FOR UPDATE;
    IF mon.id IS NULL THEN
        RAISE EXCEPTION 'monitor % does not exist', monitor_id USING ERRCODE = '42704',
            HINT = 'See pgmodels.monitors for the monitors there are.';
    ELSIF NOT pg_has_role(caller, mon.owner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of monitor %', monitor_id USING ERRCODE = '42501',
            DETAIL = format('Its retrain runs as role "%s", which alone says what it trains.', mon.owner);
    END IF;
    IF settings IS NOT NULL AND (jsonb_typeof(settings) <> 'object' OR length(settings::text) > 20000
       OR EXISTS (SELECT 1 FROM jsonb_each(settings) e
                   WHERE CASE e.key WHEN 'algorithm' THEN jsonb_typeof(e.value) <> 'string' OR length(e.value #>> '{}') > 100
                                    WHEN 'hyperparams' THEN jsonb_typeof(e.value) <> 'object'
                                    WHEN 'preprocess' THEN jsonb_typeof(e.value) <> 'object'
                                    ELSE true END)) THEN
        RAISE EXCEPTION 'invalid retrain settings' USING ERRCODE = '22023',
            DETAIL = 'They are an object with an algorithm (text), hyperparams and preprocess (objects), each optional.';
    END IF;
    UPDATE pgmodels.monitor m SET retrain_with = nullif(settings, '{}'::jsonb) WHERE m.id = mon.id;
    RETURN nullif(settings, '{}'::jsonb);
END
$$;
COMMENT ON FUNCTION pgmodels._monitor_retrain_with(text, bigint, jsonb) IS 'internal: the core of set_monitor_retrain(): stores what a monitor''s retrain trains, for the monitor''s verified owner (definer: it writes the catalog)';

CREATE OR REPLACE FUNCTION pgmodels._set_monitor_retrain(monitor_id bigint, algorithm text, hyperparams jsonb,
                                                         preprocess jsonb)
RETURNS jsonb LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.monitor.schedule import set_retrain; return set_retrain(monitor_id, algorithm, hyperparams, preprocess)
$$;
COMMENT ON FUNCTION pgmodels._set_monitor_retrain(bigint, text, jsonb, jsonb) IS 'internal: the core of set_monitor_retrain()';

CREATE OR REPLACE FUNCTION @extschema@.set_monitor_retrain(monitor_id bigint, algorithm text DEFAULT NULL,
                                                           hyperparams jsonb DEFAULT NULL, preprocess jsonb DEFAULT NULL)
RETURNS jsonb LANGUAGE sql VOLATILE
AS $$
    SELECT CASE WHEN pgmodels._raise_pending(NULL::boolean) IS NULL THEN r END
      FROM (SELECT pgmodels._set_monitor_retrain($1, $2, $3, $4) AS r) s
$$;
COMMENT ON FUNCTION @extschema@.set_monitor_retrain(bigint, text, jsonb, jsonb) IS 'names what a monitor''s retrain trains instead of what the deployed version was trained with: an algorithm (with its hyperparams, else its defaults), hyperparams, preprocess; all NULL: the deployed version''s again; returns the settings; the monitor owner''s';

-- A model version's lineage, for a role that may use its project.
CREATE OR REPLACE FUNCTION pgmodels._model_lineage(model_id bigint, credential text) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    m pgmodels.models;
    proj pgmodels.projects;
BEGIN
    SELECT x.* INTO m FROM pgmodels.models x WHERE x.id = model_id;
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.id = m.project_id;
    IF m.id IS NULL OR NOT pgmodels._may(caller, proj.id, 'use') THEN
        -- the same answer for a model that is not there and one the caller may not see
        RAISE EXCEPTION 'model % does not exist', model_id USING ERRCODE = '42704',
            HINT = 'pgmodels.overview lists the models of the projects you may use.';
    END IF;
    RETURN jsonb_build_object(
        'project', proj.name, 'version', m.version, 'model_id', m.id, 'task', m.task, 'algorithm', m.algorithm,
        'runtime', m.runtime,
        -- the profile's details (quantiles, min and max, category values) describe the
        -- training rows: for the owner, export holders (the artifact tells as much) and
        -- monitor holders (drift statistics tell as much); others see which features it covers
        'training', CASE WHEN pgmodels._may(caller, proj.id, 'owner') OR pgmodels._may(caller, proj.id, 'export')
                              OR pgmodels._may(caller, proj.id, 'monitor')
                         THEN m.training
                         ELSE (m.training - 'profile') || jsonb_build_object('profile', jsonb_build_object('features',
                              (SELECT coalesce(jsonb_object_agg(f.key, jsonb_build_object('kind', f.value -> 'kind')), '{}')
                                 FROM jsonb_each(coalesce(m.training -> 'profile' -> 'features', '{}')) f)))
                    END,
        'library_versions', m.library_versions, 'trained_by', m.trained_by, 'trained_at', m.trained_at,
        'artifact_sha256', encode(m.artifact_sha256, 'hex'), 'key_metric', pgmodels._key_metric(m.task, m.metrics),
        'metrics', m.metrics, 'hyperparams', m.hyperparams, 'search_results', m.search_results, 'labels', m.labels,
        'feature_names', m.feature_names, 'artifact_bytes', length(m.artifact),
        'deployed', (SELECT d.model_id = m.id FROM pgmodels.deployments d WHERE d.project_id = m.project_id
                      ORDER BY d.id DESC LIMIT 1),
        'decision', (SELECT r.retrain ->> 'reason' FROM pgmodels.drift_report r
                      WHERE r.project_id = m.project_id AND r.retrain ->> 'new_model_id' = m.id::text
                      ORDER BY r.id DESC LIMIT 1));
END
$$;
COMMENT ON FUNCTION pgmodels._model_lineage(bigint, text) IS 'internal: a model version''s catalog record (lineage, metrics, hyperparameters, search results, evaluation; not the artifact) for model_lineage() and the console, for a role that may use its project';

-- PL/Python cores, run as the caller.
CREATE OR REPLACE FUNCTION pgmodels._drift(project_name text, relation_name text, model_id bigint, since timestamptz,
                                           time_column text)
RETURNS TABLE (feature text, kind text, rows bigint, psi double precision, ks_statistic double precision,
               p_value double precision, null_rate_change double precision, status text)
LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return []
from pgmodels.monitor.report import drift_udf; return drift_udf(project_name, relation_name, model_id, since, time_column)
$$;
COMMENT ON FUNCTION pgmodels._drift(text, text, bigint, timestamptz, text) IS 'internal: the core of drift()';

CREATE OR REPLACE FUNCTION @extschema@.drift(project_name text, relation_name text, model_id bigint DEFAULT NULL,
                                             since timestamptz DEFAULT NULL, time_column text DEFAULT NULL)
RETURNS TABLE (feature text, kind text, rows bigint, psi double precision, ks_statistic double precision,
               p_value double precision, null_rate_change double precision, status text)
LANGUAGE sql VOLATILE
AS $$
    SELECT * FROM pgmodels._drift($1, $2, $3, $4, $5)
    UNION ALL
    SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE pgmodels._raise_pending(NULL::boolean)
$$;
COMMENT ON FUNCTION @extschema@.drift(text, text, bigint, timestamptz, text) IS 'compares a relation (or the rows since a time) with the deployed or given model''s training profile: per feature PSI, Kolmogorov-Smirnov statistic and p-value, null-rate change and a status (ok, warning, drift), plus one row for the predictions; for the project''s owner and roles granted predict and monitor';

CREATE OR REPLACE FUNCTION pgmodels._set_reference(project_name text, relation_name text, model_id bigint,
                                                   y_column_name text)
RETURNS bigint LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.monitor.report import set_reference; return set_reference(project_name, relation_name, model_id, y_column_name)
$$;
COMMENT ON FUNCTION pgmodels._set_reference(text, text, bigint, text) IS 'internal: the core of set_reference()';

CREATE OR REPLACE FUNCTION @extschema@.set_reference(project_name text, relation_name text, model_id bigint DEFAULT NULL,
                                                     y_column_name text DEFAULT NULL)
RETURNS bigint LANGUAGE sql VOLATILE
AS $$ SELECT coalesce(pgmodels._set_reference($1, $2, $3, $4), pgmodels._raise_pending(NULL::bigint)) $$;
COMMENT ON FUNCTION @extschema@.set_reference(text, text, bigint, text) IS 'stores the reference profile drift() compares with for the deployed or given model (an imported one, say) from a relation''s rows; the target''s distribution from y_column_name, or else from the model''s own predictions; returns the rows read; the project owner''s';

CREATE OR REPLACE FUNCTION @extschema@.set_monitor_thresholds(project_name text,
    psi_warning double precision DEFAULT NULL, psi_drift double precision DEFAULT NULL,
    ks_alpha double precision DEFAULT NULL, ks_min_statistic double precision DEFAULT NULL,
    retrain_margin double precision DEFAULT NULL, min_holdout_rows integer DEFAULT NULL,
    retrain_on text DEFAULT NULL)
RETURNS jsonb LANGUAGE sql VOLATILE
AS $$ SELECT pgmodels._set_monitor_thresholds(pgmodels._credential(), $1, $2, $3, $4, $5, $6, $7, $8) $$;
COMMENT ON FUNCTION @extschema@.set_monitor_thresholds(text, double precision, double precision, double precision, double precision, double precision, integer, text) IS 'sets a project''s drift thresholds (PSI warning 0.1 and drift 0.2, KS alpha 0.01 with a statistic of at least 0.1), its retrain margin and minimum holdout rows, and when a retraining monitor retrains (drift, warning or always: at every report); NULL keeps a value; the project owner''s';

CREATE OR REPLACE FUNCTION pgmodels._monitor(project_name text, relation_name text, schedule text, time_column text,
                                             retrain boolean)
RETURNS bigint LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.monitor.schedule import create; return create(project_name, relation_name, schedule, time_column, retrain)
$$;
COMMENT ON FUNCTION pgmodels._monitor(text, text, text, text, boolean) IS 'internal: the core of monitor()';

CREATE OR REPLACE FUNCTION @extschema@.monitor(project_name text, relation_name text, schedule text,
                                               time_column text DEFAULT NULL, retrain boolean DEFAULT false)
RETURNS bigint LANGUAGE sql VOLATILE
AS $$ SELECT coalesce(pgmodels._monitor($1, $2, $3, $4, $5), pgmodels._raise_pending(NULL::bigint)) $$;
COMMENT ON FUNCTION @extschema@.monitor(text, text, text, text, boolean) IS 'monitors a relation for drift against a project''s deployed model on a pg_cron schedule (NULL: by hand with run_monitor()), writing pgmodels.drift_reports and notifying channel pgmodels_drift; with retrain, retrains on drift and deploys only a better model; returns the monitor id';

CREATE OR REPLACE FUNCTION pgmodels._run_monitor(monitor_id bigint)
RETURNS bigint LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.monitor.schedule import run; return run(monitor_id)
$$;
COMMENT ON FUNCTION pgmodels._run_monitor(bigint) IS 'internal: the core of run_monitor()';

CREATE OR REPLACE FUNCTION @extschema@.run_monitor(monitor_id bigint)
RETURNS bigint LANGUAGE sql VOLATILE
AS $$
    SELECT CASE WHEN pgmodels._raise_pending(NULL::boolean) IS NULL THEN r END
      FROM (SELECT pgmodels._run_monitor($1) AS r) s
$$;
COMMENT ON FUNCTION @extschema@.run_monitor(bigint) IS 'writes one drift report of a monitor now, as its owner (pg_cron calls it on the monitor''s schedule); returns the report id, or NULL when the window has no rows';

CREATE OR REPLACE FUNCTION @extschema@.drop_monitor(monitor_id bigint) RETURNS void LANGUAGE sql VOLATILE
AS $$ SELECT pgmodels._drop_monitor(pgmodels._credential(), $1) $$;
COMMENT ON FUNCTION @extschema@.drop_monitor(bigint) IS 'drops a monitor and its pg_cron entry (its reports stay); the monitor owner''s or the project owner''s';

CREATE OR REPLACE FUNCTION pgmodels._model_lineage_rows(model_id bigint)
RETURNS TABLE (item text, value text, detail text) LANGUAGE plpython3u STABLE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return []
from pgmodels.monitor.lineage import lineage_udf; return lineage_udf(model_id)
$$;
COMMENT ON FUNCTION pgmodels._model_lineage_rows(bigint) IS 'internal: the core of model_lineage()';

CREATE OR REPLACE FUNCTION @extschema@.model_lineage(model_id bigint)
RETURNS TABLE (item text, value text, detail text) LANGUAGE sql STABLE
AS $$
    SELECT * FROM pgmodels._model_lineage_rows($1)
    UNION ALL
    SELECT NULL, NULL, NULL WHERE pgmodels._raise_pending(NULL::boolean)
$$;
COMMENT ON FUNCTION @extschema@.model_lineage(bigint) IS 'where a model version came from: training relation, row count and fingerprint, split, snapshot, who trained it when, library and pgmodels versions, for a retrain the model and drift report it answered; for roles that may use its project';

-- Grants. Internal functions: none for PUBLIC but the cores, which check the caller
-- themselves (a credential, the project's privileges, the monitor's owner).
GRANT EXECUTE ON FUNCTION
    -- each checks the caller's credential and privilege itself
    pgmodels._drift_reference(text, bigint, text), pgmodels._set_monitor_thresholds(text, text, double precision, double precision, double precision, double precision, double precision, integer, text),
    pgmodels._monitor_create(text, text, oid, text, text, boolean), pgmodels._monitor_get(text, bigint),
    pgmodels._drift_report_write(text, bigint, bigint, timestamptz, timestamptz, bigint, text, text[], jsonb, jsonb),
    pgmodels._drift_report_decide(text, bigint, jsonb), pgmodels._store_reference(text, bigint, jsonb),
    pgmodels._drop_monitor(text, bigint), pgmodels._model_lineage(bigint, text),
    pgmodels._stage_profile(bigint, text), pgmodels._monitor_retrain_with(text, bigint, jsonb),
    -- the PL/Python cores run as the caller and reach the catalog only through the above
    pgmodels._drift(text, text, bigint, timestamptz, text), pgmodels._set_reference(text, text, bigint, text),
    pgmodels._monitor(text, text, text, text, boolean), pgmodels._run_monitor(bigint),
    pgmodels._model_lineage_rows(bigint), pgmodels._set_monitor_retrain(bigint, text, jsonb, jsonb)
TO PUBLIC;
-- Scheduling is for the roles an administrator grants it to, as create_batch_job is.
REVOKE EXECUTE ON FUNCTION @extschema@.monitor(text, text, text, text, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pgmodels._valid_drift_report(jsonb, text[], text, text[], bigint) FROM PUBLIC;
