-- Safe rollouts: start_rollout(), alter_rollout(), promote_rollout(), abort_rollout(),
-- rollout_version(), register_outcomes(), rollout_report(), evaluate_rollout() and the
-- views pgmodels.rollouts and pgmodels.rollout_decisions. Tables: 126_rollouts_catalog.sql.
--
-- A rollout puts a candidate version of a project beside its deployed one (the
-- champion). Every mode scores through pgmodels._lookup, which registers the project's
-- active rollout with the model for the statement; the scoring code then routes
-- (python_udfs/pgmodels/rollout/route.py): in shadow the candidate scores every input
-- and only the champion answers; in canary a fraction of keys is answered by the
-- candidate. A key's share is the first 52 bits of sha256('<rollout id>:<key>') over
-- 2^52; the candidate answers a key whose share is below the fraction, so raising the
-- fraction keeps every key that was already on the candidate, and rollout_version()
-- tells an application which version a key gets.

-- A rollout's start, change or end reaches every backend's kept serving decisions at
-- once, as a deploy does (sql/040_serving.sql).
CREATE OR REPLACE TRIGGER catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pgmodels.rollout_runs
    FOR EACH STATEMENT EXECUTE FUNCTION pgmodels._catalog_changed();
ALTER TABLE pgmodels.rollout_runs ENABLE ALWAYS TRIGGER catalog_changed;

-- A rollout's recorded answers go with it (a project dropped takes its rollouts); the log
-- has no foreign key, which would cost a check per row recorded. Not a definer: it runs as
-- whoever deletes rollouts, pgmodels' own definer code or a superuser (and a cascade from
-- pgmodels.projects runs as the tables' owner).
CREATE OR REPLACE FUNCTION pgmodels._rollouts_gone() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM pgmodels.rollout_predictions a WHERE a.rollout_id IN (SELECT g.id FROM gone g);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION pgmodels._rollouts_gone() IS 'internal: a statement trigger on rollout_runs: deletes the recorded answers of the rollouts deleted';
CREATE OR REPLACE TRIGGER rollouts_gone AFTER DELETE ON pgmodels.rollout_runs REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION pgmodels._rollouts_gone();
ALTER TABLE pgmodels.rollout_runs ENABLE ALWAYS TRIGGER rollouts_gone;

-- A deployment other than a rollout's own (deploy(), a train() that deploys, a monitor's
-- retrain) replaces the champion a rollout was measured against: the rollout ends, aborted,
-- with that reason in its history, and its evaluation job goes. Not a definer: only
-- pgmodels' definer functions (and superusers) write deployments.
CREATE OR REPLACE FUNCTION pgmodels._rollout_superseded() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ro pgmodels.rollout_runs;
BEGIN
    FOR ro IN SELECT r.* FROM pgmodels.rollout_runs r WHERE r.project_id = NEW.project_id AND r.status = 'active'
               FOR UPDATE LOOP
        PERFORM pgmodels._cron_unschedule(ro.cron_job_id);
        UPDATE pgmodels.rollout_runs r SET status = 'aborted', ended_at = clock_timestamp(), cron_job_id = NULL,
               decision = 'abort', reason = format('model %s was deployed (%s) while the rollout ran', NEW.model_id,
                                                   NEW.strategy), decided_at = clock_timestamp()
         WHERE r.id = ro.id;
        INSERT INTO pgmodels.rollout_history (rollout_id, action, reason, numbers, by_role)
        VALUES (ro.id, 'abort', format('model %s was deployed (%s) while the rollout ran', NEW.model_id, NEW.strategy),
                jsonb_build_object('deployment', NEW.id), NEW.deployed_by);
        PERFORM pg_notify('pgmodels_rollout', jsonb_build_object(
            'rollout_id', ro.id, 'project', (SELECT p.name FROM pgmodels.projects p WHERE p.id = ro.project_id),
            'action', 'abort', 'automatic', false, 'reason', 'a deployment replaced the champion',
            'model_id', NEW.model_id)::text);
    END LOOP;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION pgmodels._rollout_superseded() IS 'internal: a row trigger on deployments: a deployment that is not a rollout''s own ends the project''s active rollout (aborted, with the reason) and notifies pgmodels_rollout';
CREATE OR REPLACE TRIGGER rollout_superseded AFTER INSERT ON pgmodels.deployments
    FOR EACH ROW WHEN (NEW.strategy IS DISTINCT FROM 'rollout') EXECUTE FUNCTION pgmodels._rollout_superseded();
ALTER TABLE pgmodels.deployments ENABLE ALWAYS TRIGGER rollout_superseded;

-- The rule a rollout is decided by, with the defaults filled in and each value checked.
CREATE OR REPLACE FUNCTION pgmodels._rollout_rule(rule jsonb, task text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r jsonb := coalesce(rule, '{}'::jsonb);
    k text;
    metric text;
BEGIN
    IF jsonb_typeof(r) <> 'object' THEN
        RAISE EXCEPTION 'a rollout rule must be a jsonb object' USING ERRCODE = '22023';
    END IF;
    FOR k IN SELECT jsonb_object_keys(r) LOOP
        IF k NOT IN ('metric', 'margin', 'min_outcomes', 'max_error_rate', 'confidence', 'auto', 'schedule',
                     'retention_days') THEN
            RAISE EXCEPTION 'unknown rollout rule setting "%"', k USING ERRCODE = '22023',
                HINT = 'The settings are metric, margin, min_outcomes, max_error_rate, confidence, auto, schedule and retention_days.';
        END IF;
    END LOOP;
    metric := coalesce(r ->> 'metric', CASE WHEN task = 'regression' THEN 'r2' ELSE 'f1' END);
    IF metric NOT IN ('f1', 'accuracy', 'r2', 'mae') OR (task = 'regression') <> (metric IN ('r2', 'mae')) THEN
        RAISE EXCEPTION 'metric "%" does not apply to a % model', metric, task USING ERRCODE = '22023',
            HINT = 'Classification: f1 or accuracy; regression: r2 or mae.';
    END IF;
    r := jsonb_build_object('metric', metric, 'margin', 0.0, 'min_outcomes', 200, 'max_error_rate', 0.01,
                            'confidence', 0.95, 'auto', true, 'schedule', NULL, 'retention_days', 30)
         || (r - 'metric') || jsonb_build_object('metric', metric);
    IF jsonb_typeof(r -> 'margin') <> 'number' OR (r ->> 'margin')::float8 NOT BETWEEN 0 AND 1
       OR jsonb_typeof(r -> 'min_outcomes') <> 'number' OR (r ->> 'min_outcomes')::float8 NOT BETWEEN 1 AND 1e9
       OR jsonb_typeof(r -> 'max_error_rate') <> 'number' OR (r ->> 'max_error_rate')::float8 NOT BETWEEN 0 AND 1
       OR jsonb_typeof(r -> 'confidence') <> 'number' OR (r ->> 'confidence')::float8 NOT IN (0.8, 0.9, 0.95, 0.99)
       OR jsonb_typeof(r -> 'auto') <> 'boolean'
       OR jsonb_typeof(r -> 'retention_days') <> 'number' OR (r ->> 'retention_days')::float8 NOT BETWEEN 1 AND 3650
       OR jsonb_typeof(r -> 'schedule') NOT IN ('null', 'string') OR length(r ->> 'schedule') > 100 THEN
        RAISE EXCEPTION 'invalid rollout rule %', rule::text USING ERRCODE = '22023',
            DETAIL = 'margin is a number between 0 and 1, min_outcomes a number between 1 and 1e9, max_error_rate between 0 and 1, confidence one of 0.8, 0.9, 0.95 and 0.99, auto a boolean, schedule a cron expression, retention_days a number between 1 and 3650.';
    END IF;
    RETURN r;
END
$$;
COMMENT ON FUNCTION pgmodels._rollout_rule(jsonb, text) IS 'internal: a rollout''s decision rule with its defaults (metric f1 or r2, margin 0, min_outcomes 200, max_error_rate 0.01, confidence 0.95, auto true, retention_days 30), checked';

CREATE OR REPLACE FUNCTION pgmodels._rollout_check_fraction(mode text, fraction real) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF mode IS NULL OR mode NOT IN ('shadow', 'canary') THEN
        RAISE EXCEPTION 'unknown rollout mode "%"', mode USING ERRCODE = '22023',
            HINT = 'The modes are shadow (the candidate scores beside the champion, never answers) and canary (it answers a fraction of keys).';
    END IF;
    IF mode = 'canary' AND (fraction IS NULL OR NOT (fraction > 0 AND fraction < 1)) THEN
        RAISE EXCEPTION 'a canary''s fraction must be between 0 and 1, exclusive, got %', coalesce(fraction::text, 'NULL')
            USING ERRCODE = '22023', HINT = 'Pass fraction => 0.05 for 5 % of keys.';
    END IF;
    IF mode = 'shadow' AND fraction IS NOT NULL THEN
        RAISE EXCEPTION 'a shadow rollout takes no fraction' USING ERRCODE = '22023',
            DETAIL = 'In shadow the candidate scores every input and never answers.',
            HINT = 'Use mode canary to have it answer a fraction of keys.';
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._rollout_check_fraction(text, real) IS 'internal: raises unless the mode is shadow (no fraction) or canary (0 < fraction < 1)';

-- The pg_cron entry that evaluates a rollout every schedule, as the project's owner role
-- (which alone reads its outcomes: sql/129_rollouts_outcomes.sql), whoever started it (a
-- member of that role, or a superuser). The caller is checked by the callers.
CREATE OR REPLACE FUNCTION pgmodels._rollout_schedule(ro pgmodels.rollout_runs, caller oid) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    schedule text := ro.rule ->> 'schedule';
BEGIN
    IF NOT (ro.rule -> 'auto')::boolean OR (schedule IS NULL AND NOT pgmodels._cron_here()) THEN
        RETURN NULL;  -- evaluated by hand (evaluate_rollout), or by the user's own scheduler
    END IF;
    RETURN pgmodels._cron_schedule(
        format('pgmodels_rollout:%s:%s', (SELECT d.oid FROM pg_database d WHERE d.datname = current_database()), ro.id),
        coalesce(schedule, '* * * * *'), format('SELECT * FROM %I.evaluate_rollout(%s::bigint)', '@extschema@', ro.id),
        (SELECT p.owner::oid FROM pgmodels.projects p WHERE p.id = ro.project_id));
END
$$;
COMMENT ON FUNCTION pgmodels._rollout_schedule(pgmodels.rollout_runs, oid) IS 'internal: schedules a rollout''s automatic evaluation with pg_cron as the project''s owner role (every minute unless the rule names a schedule; none where pg_cron is not installed and no schedule was asked for)';

-- The core of start_rollout(). Definer: it writes the catalog. Owner only.
CREATE OR REPLACE FUNCTION pgmodels._rollout_start(credential text, project_name text, model_id bigint, mode text,
                                                   fraction real, rule jsonb)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    proj pgmodels.projects;
    cand pgmodels.models;
    champ pgmodels.models;
    ro pgmodels.rollout_runs;
    other bigint;
BEGIN
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.name = project_name FOR UPDATE;
    IF proj.id IS NULL THEN
        RAISE EXCEPTION 'project "%" does not exist', project_name USING ERRCODE = '42704';
    END IF;
    PERFORM pgmodels._require_owner(caller, proj);
    PERFORM pgmodels._rollout_check_fraction(mode, fraction);
    SELECT m.* INTO cand FROM pgmodels.models m WHERE m.id = _rollout_start.model_id;
    IF cand.id IS NULL THEN
        RAISE EXCEPTION 'model % does not exist', model_id USING ERRCODE = '42704';
    END IF;
    IF cand.project_id <> proj.id THEN
        RAISE EXCEPTION 'model % belongs to another project', model_id USING ERRCODE = '22023',
            HINT = format('A rollout tries a version of project "%s" itself: see pgmodels.overview.', proj.name);
    END IF;
    SELECT m.* INTO champ FROM pgmodels.deployments d JOIN pgmodels.models m ON m.id = d.model_id
     WHERE d.project_id = proj.id ORDER BY d.id DESC LIMIT 1;
    IF champ.id IS NULL THEN
        RAISE EXCEPTION 'project "%" has no deployed model', project_name USING ERRCODE = '55000',
            HINT = 'A rollout tries a candidate beside the deployed version: deploy() one first.';
    END IF;
    IF champ.id = cand.id THEN
        RAISE EXCEPTION 'model % is the deployed version of project "%"', model_id, project_name USING ERRCODE = '22023',
            HINT = 'Roll out another version: train() one, or see pgmodels.overview.';
    END IF;
    IF cand.task <> champ.task OR cand.feature_names <> champ.feature_names THEN
        RAISE EXCEPTION 'model % does not answer the same question as the deployed version', model_id
            USING ERRCODE = '22023',
                  DETAIL = format('The deployed version is a %s model of features (%s); model %s is a %s model of (%s).',
                                  champ.task, array_to_string(champ.feature_names, ', '), cand.id, cand.task,
                                  array_to_string(cand.feature_names, ', '));
    END IF;
    IF champ.task NOT IN ('classification', 'regression') THEN
        RAISE EXCEPTION 'rollouts are for classification and regression models, not %', champ.task
            USING ERRCODE = '0A000';
    END IF;
    SELECT r.id INTO other FROM pgmodels.rollout_runs r WHERE r.project_id = proj.id AND r.status = 'active';
    IF other IS NOT NULL THEN
        RAISE EXCEPTION 'project "%" already has an active rollout', project_name USING ERRCODE = '55006',
            DETAIL = format('Rollout %s is active.', other),
            HINT = format('Change it with alter_rollout(%s, ...), or end it with promote_rollout(%s) or abort_rollout(%s).',
                          other, other, other);
    END IF;
    INSERT INTO pgmodels.rollout_runs (project_id, champion_id, candidate_id, mode, fraction, rule, started_by)
    VALUES (proj.id, champ.id, cand.id, mode, fraction, pgmodels._rollout_rule(rule, champ.task), caller::regrole::text)
    RETURNING * INTO ro;
    UPDATE pgmodels.rollout_runs r SET cron_job_id = pgmodels._rollout_schedule(ro, caller) WHERE r.id = ro.id;
    INSERT INTO pgmodels.rollout_history (rollout_id, action, reason, numbers, by_role)
    VALUES (ro.id, 'start', format('%s of version %s beside version %s', mode, cand.version, champ.version),
            jsonb_build_object('mode', mode, 'fraction', fraction, 'rule', ro.rule), caller::regrole::text);
    RETURN ro.id;
END
$$;
COMMENT ON FUNCTION pgmodels._rollout_start(text, text, bigint, text, real, jsonb) IS 'internal: the core of start_rollout() (definer: it writes the catalog), for the project''s owner';

-- A rollout locked for a change by its project's owner.
CREATE OR REPLACE FUNCTION pgmodels._rollout_for_owner(caller oid, rollout_id bigint) RETURNS pgmodels.rollout_runs
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ro pgmodels.rollout_runs;
    proj pgmodels.projects;
BEGIN
    SELECT r.* INTO ro FROM pgmodels.rollout_runs r WHERE r.id = rollout_id FOR UPDATE;
    IF ro.id IS NULL THEN
        RAISE EXCEPTION 'rollout % does not exist', coalesce(rollout_id::text, 'NULL') USING ERRCODE = '42704',
            HINT = 'See pgmodels.rollouts for the rollouts there are.';
    END IF;
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.id = ro.project_id;
    PERFORM pgmodels._require_owner(caller, proj);
    RETURN ro;
END
$$;
COMMENT ON FUNCTION pgmodels._rollout_for_owner(oid, bigint) IS 'internal: a rollout, locked, after checking that the role owns its project';

CREATE OR REPLACE FUNCTION pgmodels._rollout_require_active(ro pgmodels.rollout_runs, what text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF ro.status <> 'active' THEN
        RAISE EXCEPTION 'rollout % is %, it cannot be %', ro.id, ro.status, what USING ERRCODE = '55000',
            DETAIL = format('It ended at %s.', ro.ended_at),
            HINT = 'Start a new one with start_rollout().';
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._rollout_require_active(pgmodels.rollout_runs, text) IS 'internal: raises unless the rollout is active';

-- The core of alter_rollout().
CREATE OR REPLACE FUNCTION pgmodels._rollout_alter(credential text, rollout_id bigint, mode text, fraction real,
                                                   rule jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    ro pgmodels.rollout_runs := pgmodels._rollout_for_owner(caller, rollout_id);
    new_mode text;
    new_fraction real;
    new_rule jsonb;
BEGIN
    PERFORM pgmodels._rollout_require_active(ro, 'changed');
    new_mode := coalesce(mode, CASE WHEN fraction IS NOT NULL THEN 'canary' END, ro.mode);
    new_fraction := CASE WHEN new_mode = 'canary' THEN coalesce(fraction, ro.fraction) END;
    IF new_mode = 'shadow' AND fraction IS NOT NULL THEN
        new_fraction := fraction;  -- refused below, with the reason
    END IF;
    PERFORM pgmodels._rollout_check_fraction(new_mode, new_fraction);
    new_rule := CASE WHEN rule IS NULL THEN ro.rule
                     ELSE pgmodels._rollout_rule(ro.rule || rule, (SELECT m.task FROM pgmodels.models m WHERE m.id = ro.champion_id)) END;
    UPDATE pgmodels.rollout_runs r SET mode = new_mode, fraction = new_fraction, rule = new_rule WHERE r.id = ro.id;
    IF new_rule IS DISTINCT FROM ro.rule THEN
        PERFORM pgmodels._cron_unschedule(ro.cron_job_id);
        SELECT r.* INTO ro FROM pgmodels.rollout_runs r WHERE r.id = ro.id;
        UPDATE pgmodels.rollout_runs r SET cron_job_id = pgmodels._rollout_schedule(ro, caller) WHERE r.id = ro.id;
    END IF;
    INSERT INTO pgmodels.rollout_history (rollout_id, action, reason, numbers, by_role)
    VALUES (ro.id, 'alter', format('%s%s', new_mode, CASE WHEN new_fraction IS NOT NULL THEN ' at ' || new_fraction END),
            jsonb_build_object('mode', new_mode, 'fraction', new_fraction, 'rule', new_rule), caller::regrole::text);
END
$$;
COMMENT ON FUNCTION pgmodels._rollout_alter(text, bigint, text, real, jsonb) IS 'internal: the core of alter_rollout() (definer: it writes the catalog), for the project''s owner';

-- The core of promote_rollout() and abort_rollout(), and of evaluate_rollout()'s
-- decisions (action wait records an evaluation that decided nothing). A promote is a
-- deployment like any other (strategy rollout), in the project's history.
CREATE OR REPLACE FUNCTION pgmodels._rollout_decide(credential text, rollout_id bigint, action text, automatic boolean,
                                                    reason text, numbers jsonb)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    ro pgmodels.rollout_runs := pgmodels._rollout_for_owner(caller, rollout_id);
BEGIN
    IF action IS NULL OR action NOT IN ('promote', 'abort', 'wait') THEN
        RAISE EXCEPTION 'unknown rollout decision "%"', action USING ERRCODE = '22023';
    END IF;
    PERFORM pgmodels._rollout_require_active(ro, CASE action WHEN 'promote' THEN 'promoted' WHEN 'abort' THEN 'aborted'
                                                               ELSE 'evaluated' END);
    INSERT INTO pgmodels.rollout_history (rollout_id, action, automatic, reason, numbers, by_role)
    VALUES (ro.id, action, coalesce(automatic, false), reason, numbers, caller::regrole::text);
    UPDATE pgmodels.rollout_runs r SET decision = action, reason = _rollout_decide.reason, decided_at = clock_timestamp()
     WHERE r.id = ro.id;
    IF action = 'wait' THEN
        RETURN NULL;
    END IF;
    IF action = 'promote' THEN
        INSERT INTO pgmodels.deployments (project_id, model_id, strategy, deployed_by)
        VALUES (ro.project_id, ro.candidate_id, 'rollout', caller::regrole::text);
    ELSE
        -- the champion again, under a new deployment number: devices the canary gave the
        -- candidate take the champion's bundle as newer (a rollback is a new deployment)
        INSERT INTO pgmodels.deployments (project_id, model_id, strategy, deployed_by)
        SELECT d.project_id, d.model_id, 'rollout', caller::regrole::text FROM pgmodels.deployments d
         WHERE d.project_id = ro.project_id ORDER BY d.id DESC LIMIT 1;
    END IF;
    PERFORM pgmodels._cron_unschedule(ro.cron_job_id);
    UPDATE pgmodels.rollout_runs r SET status = CASE action WHEN 'promote' THEN 'promoted' ELSE 'aborted' END,
           ended_at = clock_timestamp(), cron_job_id = NULL
     WHERE r.id = ro.id;
    PERFORM pg_notify('pgmodels_rollout', jsonb_build_object(
        'rollout_id', ro.id, 'project', (SELECT p.name FROM pgmodels.projects p WHERE p.id = ro.project_id),
        'action', action, 'automatic', coalesce(automatic, false), 'reason', reason,
        'model_id', CASE action WHEN 'promote' THEN ro.candidate_id ELSE ro.champion_id END)::text);
    RETURN CASE action WHEN 'promote' THEN ro.candidate_id ELSE ro.champion_id END;
END
$$;
COMMENT ON FUNCTION pgmodels._rollout_decide(text, bigint, text, boolean, text, jsonb) IS 'internal: records a rollout''s decision (promote: a deployment of the candidate; abort: the deployed version again, as a new deployment; wait: an evaluation that decided nothing), for its project''s owner, and notifies channel pgmodels_rollout on promote and abort';

-- The user's side: each runs as its caller and hands the definer core the caller's
-- credential; the core checks that the caller owns the project.
CREATE OR REPLACE FUNCTION @extschema@.start_rollout(project_name text, model_id bigint, mode text,
                                                     fraction real DEFAULT NULL, rule jsonb DEFAULT NULL)
RETURNS bigint LANGUAGE sql VOLATILE
AS $$ SELECT pgmodels._rollout_start(pgmodels._credential(), $1, $2, $3, $4, $5) $$;
COMMENT ON FUNCTION @extschema@.start_rollout(text, bigint, text, real, jsonb) IS 'starts a rollout of a model version beside the project''s deployed one: shadow (it scores every input, never answers) or canary (it answers a fraction of keys); rule: the automatic decision (metric, margin, min_outcomes, max_error_rate, confidence, auto, schedule, retention_days); returns its id; for the project''s owner';

CREATE OR REPLACE FUNCTION @extschema@.alter_rollout(rollout_id bigint, fraction real DEFAULT NULL, mode text DEFAULT NULL,
                                                     rule jsonb DEFAULT NULL)
RETURNS void LANGUAGE sql VOLATILE
AS $$ SELECT pgmodels._rollout_alter(pgmodels._credential(), $1, $3, $2, $4) $$;
COMMENT ON FUNCTION @extschema@.alter_rollout(bigint, real, text, jsonb) IS 'changes an active rollout: its canary fraction (a fraction turns a shadow into a canary), its mode, or settings of its rule; for the project''s owner';

CREATE OR REPLACE FUNCTION @extschema@.promote_rollout(rollout_id bigint) RETURNS bigint
LANGUAGE sql VOLATILE
AS $$ SELECT pgmodels._rollout_decide(pgmodels._credential(), $1, 'promote', false, 'promoted by hand', NULL) $$;
COMMENT ON FUNCTION @extschema@.promote_rollout(bigint) IS 'ends an active rollout by deploying its candidate (a deployment with strategy rollout, in the history); returns the model id; for the project''s owner';

CREATE OR REPLACE FUNCTION @extschema@.abort_rollout(rollout_id bigint) RETURNS bigint
LANGUAGE sql VOLATILE
AS $$ SELECT pgmodels._rollout_decide(pgmodels._credential(), $1, 'abort', false, 'aborted by hand', NULL) $$;
COMMENT ON FUNCTION @extschema@.abort_rollout(bigint) IS 'ends an active rollout without deploying its candidate: every key goes back to the champion, which is deployed again under a new deployment number (devices the canary gave the candidate take it back); returns the champion''s model id; for the project''s owner';

-- Grants of this area. Functions are created executable by PUBLIC (sql/090_grants.sql ran
-- before this file); internal ones are not, but for those listed here, each safe to call.
REVOKE EXECUTE ON FUNCTION
    pgmodels._rollouts_gone(),
    pgmodels._rollout_superseded(),
    pgmodels._rollout_rule(jsonb, text),
    pgmodels._rollout_check_fraction(text, real),
    pgmodels._rollout_schedule(pgmodels.rollout_runs, oid),
    pgmodels._rollout_start(text, text, bigint, text, real, jsonb),
    pgmodels._rollout_for_owner(oid, bigint),
    pgmodels._rollout_require_active(pgmodels.rollout_runs, text),
    pgmodels._rollout_alter(text, bigint, text, real, jsonb),
    pgmodels._rollout_decide(text, bigint, text, boolean, text, jsonb)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    -- the cores the user's functions call as the caller: each checks the caller's
    -- credential and that it owns the project
    pgmodels._rollout_start(text, text, bigint, text, real, jsonb),
    pgmodels._rollout_alter(text, bigint, text, real, jsonb),
    pgmodels._rollout_decide(text, bigint, text, boolean, text, jsonb)
TO PUBLIC;
