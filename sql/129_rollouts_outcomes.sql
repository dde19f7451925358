-- Rollouts decided on real outcomes: register_outcomes(), rollout_report(),
-- evaluate_rollout() (which pg_cron runs on the rollout's schedule) and the views
-- pgmodels.rollouts and pgmodels.rollout_decisions. The report joins the answers a
-- rollout recorded (pgmodels.rollout_predictions) to the true labels that arrive later in
-- the relation register_outcomes() named. The project's owner role registers it and only
-- that role reads it (a member, even a superuser, evaluates after SET ROLE to it; pg_cron
-- runs the evaluation as it): whatever code the relation runs (a view's functions, a
-- domain's check, a type's cast) runs as the role that wrote it, never as another; the
-- read runs with search_path pg_catalog, so no operator another role put in a schema can
-- take part; only text comes back to pgmodels' code.

CREATE OR REPLACE FUNCTION pgmodels._outcomes_register(credential text, project_name text, relation oid,
                                                       key_column text, label_column text, time_column text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    proj pgmodels.projects;
    col text;
BEGIN
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.name = project_name FOR UPDATE;
    IF proj.id IS NULL THEN
        RAISE EXCEPTION 'project "%" does not exist', project_name USING ERRCODE = '42704';
    END IF;
    PERFORM pgmodels._require_owner(caller, proj);
    IF caller <> proj.owner::oid THEN
        RAISE EXCEPTION 'outcomes are registered by the project''s owner role itself' USING ERRCODE = '42501',
            DETAIL = format('Project "%s" belongs to role "%s": its outcomes are read as that role, and only as it.',
                            proj.name, proj.owner),
            HINT = format('SET ROLE %s; then register_outcomes().', proj.owner);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = relation AND c.relkind IN ('r', 'p', 'v', 'm', 'f')) THEN
        RAISE EXCEPTION 'relation with oid % is not a table or view', relation USING ERRCODE = '42809';
    END IF;
    FOREACH col IN ARRAY ARRAY[key_column, label_column] || CASE WHEN time_column IS NULL THEN ARRAY[]::text[]
                                                                 ELSE ARRAY[time_column] END LOOP
        IF col IS NULL OR NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = relation AND a.attname = col
                                                                    AND a.attnum > 0 AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'column "%" does not exist in relation %', coalesce(col, 'NULL'), relation::regclass
                USING ERRCODE = '42703',
                      HINT = 'Name the key column (the key predictions were routed by), the label column (the true answer) and, optionally, the time column.';
        END IF;
        IF NOT has_column_privilege(caller, relation, col, 'SELECT') THEN
            RAISE EXCEPTION 'permission denied for relation %', relation::regclass USING ERRCODE = '42501',
                DETAIL = format('Role "%s" cannot read column "%s"; outcomes are read with its rights.', caller::regrole, col);
        END IF;
    END LOOP;
    IF time_column IS NOT NULL AND (SELECT a.atttypid FROM pg_attribute a WHERE a.attrelid = relation AND a.attname = time_column)
       NOT IN ('timestamptz'::regtype, 'timestamp'::regtype, 'date'::regtype) THEN
        RAISE EXCEPTION 'time column "%" must be a timestamp or a date', time_column USING ERRCODE = '42804';
    END IF;
    INSERT INTO pgmodels.outcome_sources AS o (project_id, relation, relation_name, key_column, label_column, time_column,
                                               owner_role)
    VALUES (proj.id, relation, relation::regclass::text, key_column, label_column, time_column, caller)
    ON CONFLICT (project_id) DO UPDATE SET relation = EXCLUDED.relation, relation_name = EXCLUDED.relation_name,
        key_column = EXCLUDED.key_column,
        label_column = EXCLUDED.label_column, time_column = EXCLUDED.time_column, owner_role = EXCLUDED.owner_role,
        registered_at = clock_timestamp();
END
$$;
COMMENT ON FUNCTION pgmodels._outcomes_register(text, text, oid, text, text, text) IS 'internal: the core of register_outcomes() (definer: it writes the catalog), for the project''s owner role itself, which must be able to read the columns';

CREATE OR REPLACE FUNCTION @extschema@.register_outcomes(project_name text, relation_name text, key_column text,
                                                         label_column text, time_column text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    rel oid;
BEGIN
    rel := pg_catalog.to_regclass(relation_name);
    IF rel IS NULL THEN
        RAISE EXCEPTION 'relation "%" does not exist', relation_name USING ERRCODE = '42P01';
    END IF;
    PERFORM pgmodels._outcomes_register(pgmodels._credential(), project_name, rel, key_column, label_column, time_column);
END
$$;
COMMENT ON FUNCTION @extschema@.register_outcomes(text, text, text, text, text) IS 'names the table or view where a project''s true labels arrive, later, by key (key, label and optional time column): rollouts are decided on them, read with the registering role''s rights; for the project''s owner';

-- What the report of a rollout needs, for the project's owner role itself when outcomes
-- are registered (they are read as it, and only as it): the rollout, the outcome source,
-- the answers' counts and agreement, and each key's latest answer on each side (champion,
-- candidate). Definer: the catalog is not readable by PUBLIC.
CREATE OR REPLACE FUNCTION pgmodels._rollout_evidence(credential text, rollout_id bigint)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    ro pgmodels.rollout_runs;
    proj pgmodels.projects;
    src pgmodels.outcome_sources;
    champ pgmodels.models;
    cand pgmodels.models;
    col text;
    regression boolean;
BEGIN
    SELECT r.* INTO ro FROM pgmodels.rollout_runs r WHERE r.id = rollout_id;
    IF ro.id IS NULL THEN
        RAISE EXCEPTION 'rollout % does not exist', coalesce(rollout_id::text, 'NULL') USING ERRCODE = '42704';
    END IF;
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.id = ro.project_id;
    PERFORM pgmodels._require_owner(caller, proj);
    SELECT o.* INTO src FROM pgmodels.outcome_sources o WHERE o.project_id = proj.id;
    IF src.project_id IS NOT NULL THEN
        IF caller <> src.owner_role THEN
            RAISE EXCEPTION 'the outcomes of project "%" are read as role "%" only', proj.name, src.owner_role::regrole
                USING ERRCODE = '42501',
                      DETAIL = 'Whatever code the outcome relation runs, it runs as the role that registered it.',
                      HINT = format('SET ROLE %s first (pg_cron runs the evaluation as it).', src.owner_role::regrole);
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = src.relation)
           OR src.relation::regclass::text <> src.relation_name THEN
            RAISE EXCEPTION 'relation "%" of project "%"''s outcomes no longer exists', src.relation_name, proj.name
                USING ERRCODE = '42P01', HINT = 'Name where the outcomes arrive again with register_outcomes().';
        END IF;
        FOREACH col IN ARRAY ARRAY[src.key_column, src.label_column, src.time_column] LOOP
            IF col IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = src.relation
                                                  AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped) THEN
                RAISE EXCEPTION 'column "%" of relation "%" no longer exists', col, src.relation_name
                    USING ERRCODE = '42703', HINT = 'Name the outcome columns again with register_outcomes().';
            END IF;
        END LOOP;
    END IF;
    SELECT m.* INTO champ FROM pgmodels.models m WHERE m.id = ro.champion_id;
    SELECT m.* INTO cand FROM pgmodels.models m WHERE m.id = ro.candidate_id;
    regression := champ.task = 'regression';
    RETURN jsonb_build_object(
        'id', ro.id, 'project', proj.name, 'mode', ro.mode, 'fraction', ro.fraction, 'status', ro.status,
        'rule', ro.rule, 'started_at', ro.started_at, 'task', champ.task, 'labels', champ.labels,
        'champion', jsonb_build_object('id', champ.id, 'version', champ.version),
        'candidate', jsonb_build_object('id', cand.id, 'version', cand.version),
        'outcomes', CASE WHEN src.project_id IS NOT NULL THEN jsonb_build_object(
            'relation', src.relation_name, 'key', src.key_column, 'label', src.label_column, 'time', src.time_column,
            'key_type', (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                          WHERE a.attrelid = src.relation AND a.attname = src.key_column)) END,
        'counts', (SELECT jsonb_build_object(
            'candidate', jsonb_build_object('answers', count(*) FILTER (WHERE a.role <> 'champion'),
                                            'errors', count(a.error) FILTER (WHERE a.role <> 'champion'),
                                            'latency_ms', avg(a.latency_ms) FILTER (WHERE a.role <> 'champion')),
            'champion', jsonb_build_object('answers', count(*) FILTER (WHERE a.role = 'champion'
                                                                       OR a.champion_prediction IS NOT NULL),
                                           'errors', 0,
                                           'latency_ms', avg(a.latency_ms) FILTER (WHERE a.role = 'champion')),
            'agreement', avg(CASE WHEN regression
                                  THEN (abs(a.prediction - a.champion_prediction)
                                        <= 0.05 * abs(a.champion_prediction) + 1e-9)::integer
                                  ELSE (a.prediction = a.champion_prediction)::integer END)
                         FILTER (WHERE a.role = 'shadow' AND a.error IS NULL))
            FROM pgmodels.rollout_predictions a WHERE a.rollout_id = ro.id),
        'latest', (SELECT jsonb_build_object('side', coalesce(jsonb_agg(l.side), '[]'),
                                             'key', coalesce(jsonb_agg(l.key), '[]'),
                                             'prediction', coalesce(jsonb_agg(l.prediction), '[]'))
                     FROM (SELECT DISTINCT ON (s.side, a.key) s.side, a.key, s.prediction
                             FROM pgmodels.rollout_predictions a,
                                  LATERAL (VALUES (CASE WHEN a.role = 'champion' THEN 'champion' ELSE 'candidate' END,
                                                   a.prediction, a.error IS NULL),
                                                  ('champion', a.champion_prediction, a.role = 'shadow')) s(side, prediction, ok)
                            WHERE a.rollout_id = ro.id AND a.key IS NOT NULL AND s.ok AND s.prediction IS NOT NULL
                            ORDER BY s.side, a.key, a.at DESC) l));
END
$$;
COMMENT ON FUNCTION pgmodels._rollout_evidence(text, bigint) IS 'internal: a rollout, its outcome source (checked to exist as registered), the counts of its recorded answers and the agreement in shadow, and each key''s latest answer by champion and candidate; for its project''s owner, and when outcomes are registered for the role that registered them only';

CREATE OR REPLACE FUNCTION pgmodels._rollout_purge(credential text, rollout_id bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ro pgmodels.rollout_runs := pgmodels._rollout_for_owner(pgmodels._verify_caller(credential), rollout_id);
    n bigint;
BEGIN
    DELETE FROM pgmodels.rollout_predictions a WHERE a.rollout_id = ro.id
       AND a.at < clock_timestamp() - make_interval(days => (ro.rule ->> 'retention_days')::float8::integer);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION pgmodels._rollout_purge(text, bigint) IS 'internal: deletes a rollout''s recorded answers older than its rule''s retention_days, for its project''s owner';

-- The cores run as the caller (PL/Python, not definers): they read the outcomes with the
-- caller's rights. Each returns its rows as jsonb (NULL with a pending error, which the
-- SQL wrapper raises in PostgreSQL's style).
CREATE OR REPLACE FUNCTION pgmodels._rollout_report(rollout_id bigint) RETURNS jsonb
LANGUAGE plpython3u VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.rollout.report import report_json; return report_json(rollout_id)
$$;
COMMENT ON FUNCTION pgmodels._rollout_report(bigint) IS 'internal: the core of rollout_report()';

CREATE OR REPLACE FUNCTION @extschema@.rollout_report(rollout_id bigint)
RETURNS TABLE (role text, model_id bigint, version integer, predictions bigint, outcomes bigint, metric text, value double precision, ci_low double precision, ci_high double precision, difference double precision, difference_low double precision, difference_high double precision, second_metric text, second_value double precision, agreement double precision, latency_ms double precision, errors bigint, error_rate double precision)
LANGUAGE sql VOLATILE
AS $$
    SELECT r.* FROM pg_catalog.jsonb_to_recordset(coalesce(pgmodels._rollout_report($1),
                                                           pgmodels._raise_pending(NULL::jsonb)) -> 'versions')
             AS r(role text, model_id bigint, version integer, predictions bigint, outcomes bigint, metric text, value double precision, ci_low double precision, ci_high double precision, difference double precision, difference_low double precision, difference_high double precision, second_metric text, second_value double precision, agreement double precision, latency_ms double precision, errors bigint, error_rate double precision)
$$;
COMMENT ON FUNCTION @extschema@.rollout_report(bigint) IS 'per version of a rollout (champion, then candidate): answers recorded, those joined to an outcome, the key metric (f1 or r2) with its interval (the rule''s confidence), the candidate''s difference from the champion with its interval, a second metric (accuracy or mae), agreement with the champion on shared keys (shadow), latency and errors; for the project''s owner';

CREATE OR REPLACE FUNCTION pgmodels._evaluate_rollout(rollout_id bigint) RETURNS jsonb
LANGUAGE plpython3u VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.rollout.decide import evaluate; return evaluate(rollout_id)
$$;
COMMENT ON FUNCTION pgmodels._evaluate_rollout(bigint) IS 'internal: the core of evaluate_rollout()';

CREATE OR REPLACE FUNCTION @extschema@.evaluate_rollout(rollout_id bigint)
RETURNS TABLE (action text, automatic boolean, reason text, numbers jsonb)
LANGUAGE sql VOLATILE
AS $$
    SELECT r.* FROM pg_catalog.jsonb_to_record(coalesce(pgmodels._evaluate_rollout($1),
                                                        pgmodels._raise_pending(NULL::jsonb)))
             AS r(action text, automatic boolean, reason text, numbers jsonb)
$$;
COMMENT ON FUNCTION @extschema@.evaluate_rollout(bigint) IS 'applies a rollout''s rule to its report now: promote when the candidate beats the champion by the margin with the interval excluding zero after min_outcomes outcomes, abort when it is worse by the margin or fails more than max_error_rate of its answers, else wait (with auto false: recommends only); every evaluation is recorded (pgmodels.rollout_decisions), a decision notifies pgmodels_rollout; pg_cron runs it on the rollout''s schedule';

CREATE OR REPLACE VIEW pgmodels.rollouts WITH (security_barrier) AS
SELECT r.id, p.name AS project, r.champion_id, mc.version AS champion_version, r.candidate_id,
       md.version AS candidate_version, r.mode, r.fraction, r.status, r.rule, r.started_by, r.started_at, r.ended_at,
       r.decision AS last_decision, r.reason AS last_reason, r.decided_at,
       (SELECT h.numbers FROM pgmodels.rollout_history h WHERE h.rollout_id = r.id AND h.numbers ? 'versions'
         ORDER BY h.id DESC LIMIT 1) AS last_report
  FROM pgmodels.rollout_runs r
  JOIN pgmodels.projects p ON p.id = r.project_id
  JOIN pgmodels.models mc ON mc.id = r.champion_id
  JOIN pgmodels.models md ON md.id = r.candidate_id
 WHERE pgmodels._may(pgmodels._me(), p.id, 'use');
COMMENT ON VIEW pgmodels.rollouts IS 'one row per rollout of the projects the current role may use: champion and candidate, mode, fraction, status (active, promoted, aborted), started and ended, the last decision, why, and the numbers of the last evaluation';
GRANT SELECT ON pgmodels.rollouts TO PUBLIC;

CREATE OR REPLACE VIEW pgmodels.rollout_decisions WITH (security_barrier) AS
SELECT h.rollout_id, p.name AS project, h.at, h.action, h.automatic, h.reason, h.numbers, h.by_role
  FROM pgmodels.rollout_history h
  JOIN pgmodels.rollout_runs r ON r.id = h.rollout_id
  JOIN pgmodels.projects p ON p.id = r.project_id
 WHERE pgmodels._may(pgmodels._me(), p.id, 'use');
COMMENT ON VIEW pgmodels.rollout_decisions IS 'every start, change, evaluation and decision of the rollouts of projects the current role may use, with the numbers each rested on (the metric of both versions over time)';
GRANT SELECT ON pgmodels.rollout_decisions TO PUBLIC;

REVOKE EXECUTE ON FUNCTION
    pgmodels._rollout_report(bigint),
    pgmodels._evaluate_rollout(bigint),
    pgmodels._outcomes_register(text, text, oid, text, text, text),
    pgmodels._rollout_evidence(text, bigint),
    pgmodels._rollout_purge(text, bigint)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    -- run as the caller; what they read of the catalog comes through _rollout_evidence
    pgmodels._rollout_report(bigint),
    pgmodels._evaluate_rollout(bigint),
    -- each checks the caller's credential and that it owns the project
    pgmodels._outcomes_register(text, text, oid, text, text, text),
    pgmodels._rollout_evidence(text, bigint),
    pgmodels._rollout_purge(text, bigint)
TO PUBLIC;
