-- The functions and views of 100_monitor_catalog.sql (created once: tables and types), which
-- every upgrade replays (CREATE OR REPLACE).

-- The views: rows of the projects the current role may use (security_barrier, read with
-- the owner's rights, filtered by current_user), as pgmodels.overview does. A report's
-- statistics and status (every metric, the current shares over the reference's bins and
-- categories, which name the training categories) describe the training rows: the reports
-- are for the project's owner and the roles granted monitor, as drift() is.
CREATE OR REPLACE VIEW pgmodels.drift_reports WITH (security_barrier) AS
SELECT r.id, p.name AS project, r.model_id, r.model_version, r.relation, r.time_column, r.window_start,
       r.window_end, r.rows, r.status, r.drifted, r.features, r.thresholds, r.retrain, r.monitor_id,
       r.created_by, r.created_at
FROM pgmodels.drift_report r JOIN pgmodels.projects p ON p.id = r.project_id
WHERE pgmodels._may(pgmodels._me(), p.id, 'monitor');
COMMENT ON VIEW pgmodels.drift_reports IS 'drift reports of the projects the current role owns or was granted monitor on: window, model version, status, drifted features, every metric (features jsonb) and the retrain decision';

CREATE OR REPLACE VIEW pgmodels.drift_report_features WITH (security_barrier) AS
SELECT r.id AS report_id, p.name AS project, r.model_version, r.created_at, f ->> 'feature' AS feature,
       f ->> 'kind' AS kind, (f ->> 'rows')::bigint AS rows, (f ->> 'psi')::double precision AS psi,
       (f ->> 'ks_statistic')::double precision AS ks_statistic, (f ->> 'p_value')::double precision AS p_value,
       (f ->> 'null_rate_change')::double precision AS null_rate_change, f ->> 'status' AS status
FROM pgmodels.drift_report r JOIN pgmodels.projects p ON p.id = r.project_id
CROSS JOIN LATERAL jsonb_array_elements(r.features) f
WHERE pgmodels._may(pgmodels._me(), p.id, 'monitor');
COMMENT ON VIEW pgmodels.drift_report_features IS 'one row per feature of each drift report (the history of a feature''s PSI), for the projects the current role owns or was granted monitor on';

CREATE OR REPLACE VIEW pgmodels.monitors WITH (security_barrier) AS
SELECT m.id, p.name AS project, m.relation::text AS relation, m.time_column, m.schedule, m.retrain,
       m.owner::text AS owner, m.cron_job_id, m.last_window_end, m.created_at,
       CASE WHEN pgmodels._may(pgmodels._me(), p.id, 'monitor')
            THEN (SELECT r.status FROM pgmodels.drift_report r WHERE r.monitor_id = m.id ORDER BY r.id DESC LIMIT 1)
       END AS last_status,
       m.retrain_with
FROM pgmodels.monitor m JOIN pgmodels.projects p ON p.id = m.project_id
WHERE pgmodels._may(pgmodels._me(), p.id, 'use');
COMMENT ON VIEW pgmodels.monitors IS 'drift monitors of the projects the current role may use, with the status of their last report (for the project''s owner and the roles granted monitor) and what a retrain trains when not the deployed version''s algorithm, hyperparameters and preprocessing (set_monitor_retrain)';

GRANT SELECT ON pgmodels.drift_reports, pgmodels.drift_report_features, pgmodels.monitors TO PUBLIC;

-- The deployed (model_id 0) or given model, as drift() needs it, for a caller that may
-- predict with it, with the project's thresholds; not the profile itself (quantiles, min
-- and max, category values: details of the training rows that predict does not give;
-- _stage_profile hands it to drift()'s own code only, for the owner and monitor grantees).
-- Definer: the catalog is not readable by PUBLIC; the privilege check is _resolve's.
CREATE OR REPLACE FUNCTION pgmodels._drift_reference(project_name text, model_id bigint, credential text)
RETURNS TABLE (model_id bigint, project_id bigint, project text, version integer, task text, feature_names text[],
               feature_types text[], nullable text[], array_features jsonb, labels jsonb, has_profile boolean,
               y_column text, thresholds jsonb)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.id, m.project_id, (s.r).project, m.version, m.task, m.feature_names, m.feature_types, (s.r).nullable,
           m.training -> 'array_features', m.labels, (m.training -> 'profile') IS NOT NULL, m.training ->> 'y_column',
           jsonb_build_object('psi_warning', coalesce(ms.psi_warning, 0.1), 'psi_drift', coalesce(ms.psi_drift, 0.2),
                              'ks_alpha', coalesce(ms.ks_alpha, 0.01),
                              'ks_min_statistic', coalesce(ms.ks_min_statistic, 0.1),
                              'retrain_margin', coalesce(ms.retrain_margin, 0.0),
                              'min_holdout_rows', coalesce(ms.min_holdout_rows, 30),
                              'retrain_on', coalesce(ms.retrain_on, 'drift'))
      FROM (SELECT pgmodels._resolve($1, $2, pgmodels._verify_caller($3), 'predict', false) AS r) s
      JOIN pgmodels.models m ON m.id = (s.r).id
      LEFT JOIN pgmodels.monitor_settings ms ON ms.project_id = m.project_id
$$;
COMMENT ON FUNCTION pgmodels._drift_reference(text, bigint, text) IS 'internal: what drift() needs of a model (not its profile) and its project''s drift thresholds, for a caller that may predict with it';

-- The profile itself goes into the backend's Python state under a one-time token, never
-- back to the caller: drift()'s code takes it from there. A role that calls this directly
-- gets a token it can do nothing with (reading Python state needs plpython3u, a
-- superuser's language). It is staged only for a caller that may predict with the model
-- and owns its project or was granted monitor on it: the statistics drift() computes
-- from it over rows the caller chooses give the profile back (_require_monitor). Every
-- comparison with a training profile (drift(), a monitor's run) takes it from here.
-- Definer: it reads the catalog, after those checks (PL/pgSQL, so that a refusal reaches
-- the caller in PostgreSQL's words).
CREATE OR REPLACE FUNCTION pgmodels._stage_profile(model_id bigint, credential text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    m record;
BEGIN
    SELECT x.project_id, x.training -> 'profile' AS profile INTO m
      FROM pgmodels.models x WHERE x.id = (pgmodels._resolve('', model_id, caller, 'predict', false)).id;
    PERFORM pgmodels._require_monitor(caller, m.project_id);
    RETURN pgmodels._stage(m.profile);
END
$$;
COMMENT ON FUNCTION pgmodels._stage_profile(bigint, text) IS 'internal: stages a model''s reference profile in the backend for drift()''s code, for a caller that may predict with it and owns its project or was granted monitor on it; returns a one-time token';

-- Keeps a profile in the backend's Python state; only _stage_profile calls it.
CREATE OR REPLACE FUNCTION pgmodels._stage(profile jsonb) RETURNS text
LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.monitor.current import stage; return stage(profile)
$$;
COMMENT ON FUNCTION pgmodels._stage(jsonb) IS 'internal: keeps a reference profile in the backend under a one-time token; called by _stage_profile only, after its checks';
REVOKE EXECUTE ON FUNCTION pgmodels._stage(jsonb) FROM PUBLIC;  -- (created after sql/090_grants.sql revoked the rest)

-- Sets a project's thresholds: its owner's.
CREATE OR REPLACE FUNCTION pgmodels._set_monitor_thresholds(credential text, project_name text,
    psi_warning double precision, psi_drift double precision, ks_alpha double precision,
    ks_min_statistic double precision, retrain_margin double precision, min_holdout_rows integer,
    retrain_on text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    proj pgmodels.projects;
    s pgmodels.monitor_settings;
BEGIN
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.name = project_name;
    IF proj.id IS NULL THEN
        RAISE EXCEPTION 'project "%" does not exist', project_name USING ERRCODE = '42704';
    END IF;
    PERFORM pgmodels._require_owner(caller, proj);
    SELECT ms.* INTO s FROM pgmodels.monitor_settings ms WHERE ms.project_id = proj.id;
    s.project_id := proj.id;
    s.psi_warning := coalesce($3, s.psi_warning, 0.1);
    s.psi_drift := coalesce($4, s.psi_drift, 0.2);
    s.ks_alpha := coalesce($5, s.ks_alpha, 0.01);
    s.ks_min_statistic := coalesce($6, s.ks_min_statistic, 0.1);
    s.retrain_margin := coalesce($7, s.retrain_margin, 0.0);
    s.min_holdout_rows := coalesce($8, s.min_holdout_rows, 30);
    s.retrain_on := coalesce($9, s.retrain_on, 'drift');
    IF NOT (s.psi_warning > 0 AND s.psi_drift >= s.psi_warning AND s.psi_drift <= 10) THEN
        RAISE EXCEPTION 'invalid PSI thresholds: warning %, drift %', s.psi_warning, s.psi_drift USING ERRCODE = '22023',
            DETAIL = 'The warning threshold must be above 0 and at most the drift threshold, which is at most 10.',
            HINT = 'The defaults are 0.1 and 0.2.';
    ELSIF NOT (s.ks_alpha > 0 AND s.ks_alpha < 1) THEN
        RAISE EXCEPTION 'ks_alpha must be between 0 and 1, not %', s.ks_alpha USING ERRCODE = '22023',
            HINT = 'The default is 0.01.';
    ELSIF NOT (s.ks_min_statistic >= 0 AND s.ks_min_statistic <= 1) THEN
        RAISE EXCEPTION 'ks_min_statistic must be between 0 and 1, not %', s.ks_min_statistic USING ERRCODE = '22023';
    ELSIF NOT (s.retrain_margin >= 0 AND s.retrain_margin <= 1) THEN
        RAISE EXCEPTION 'retrain_margin must be between 0 and 1, not %', s.retrain_margin USING ERRCODE = '22023',
            DETAIL = 'It is how much the new model''s key metric must beat the deployed one''s by.';
    ELSIF s.retrain_on NOT IN ('drift', 'warning', 'always') THEN
        RAISE EXCEPTION 'retrain_on must be drift, warning or always, not "%"', s.retrain_on USING ERRCODE = '22023';
    ELSIF s.min_holdout_rows < 1 OR s.min_holdout_rows > 100000000 THEN
        RAISE EXCEPTION 'min_holdout_rows must be between 1 and 100000000, not %', s.min_holdout_rows USING ERRCODE = '22023';
    END IF;
    INSERT INTO pgmodels.monitor_settings SELECT s.*
        ON CONFLICT (project_id) DO UPDATE SET psi_warning = EXCLUDED.psi_warning, psi_drift = EXCLUDED.psi_drift,
            ks_alpha = EXCLUDED.ks_alpha, ks_min_statistic = EXCLUDED.ks_min_statistic,
            retrain_margin = EXCLUDED.retrain_margin, min_holdout_rows = EXCLUDED.min_holdout_rows,
            retrain_on = EXCLUDED.retrain_on;
    RETURN jsonb_build_object('psi_warning', s.psi_warning, 'psi_drift', s.psi_drift, 'ks_alpha', s.ks_alpha,
                              'ks_min_statistic', s.ks_min_statistic, 'retrain_margin', s.retrain_margin,
                              'min_holdout_rows', s.min_holdout_rows, 'retrain_on', s.retrain_on);
END
$$;
COMMENT ON FUNCTION pgmodels._set_monitor_thresholds(text, text, double precision, double precision, double precision, double precision, double precision, integer, text) IS 'internal: the core of set_monitor_thresholds() (definer: it writes the catalog for the project''s verified owner)';

-- What happened to each project, newest first: versions trained or imported,
-- deployments and rollbacks, drift reports (for the owner and monitor grantees, as
-- pgmodels.drift_reports), and every retrain decision with its reason (a failed or
-- rejected retrain included), for the projects the current role may use.
CREATE OR REPLACE VIEW pgmodels.history WITH (security_barrier) AS
SELECT e.project, e.at, e.event, e.model_id, e.version, e.detail
FROM (
    SELECT m.project_id, p.name AS project, m.trained_at AS at,
           CASE WHEN m.training ? 'retrain' THEN 'retrained' WHEN (m.training ->> 'imported')::boolean THEN 'imported'
                ELSE 'trained' END AS event,
           m.id AS model_id, m.version,
           format('%s, %s %s', m.algorithm, CASE m.task WHEN 'classification' THEN 'f1' ELSE 'r2' END,
                  coalesce(round(pgmodels._key_metric(m.task, m.metrics)::numeric, 4)::text, 'undefined')) AS detail
      FROM pgmodels.models m JOIN pgmodels.projects p ON p.id = m.project_id
    UNION ALL
    SELECT d.project_id, p.name, d.deployed_at, CASE d.strategy WHEN 'rollback' THEN 'rolled back' ELSE 'deployed' END,
           d.model_id, m.version, format('strategy %s, by %s', d.strategy, d.deployed_by)
      FROM pgmodels.deployments d JOIN pgmodels.projects p ON p.id = d.project_id
      JOIN pgmodels.models m ON m.id = d.model_id
    UNION ALL
    SELECT r.project_id, p.name, r.created_at, 'drift report ' || r.status, r.model_id, r.model_version,
           format('report %s on %s, %s rows%s', r.id, r.relation, r.rows,
                  CASE WHEN cardinality(r.drifted) > 0 THEN ', drifted: ' || array_to_string(r.drifted, ', ') ELSE '' END)
      FROM pgmodels.drift_report r JOIN pgmodels.projects p ON p.id = r.project_id
     WHERE pgmodels._may(pgmodels._me(), r.project_id, 'monitor')  -- as pgmodels.drift_reports
    UNION ALL
    SELECT r.project_id, p.name, r.created_at,
           CASE WHEN (r.retrain ->> 'deployed')::boolean THEN 'retrain deployed'
                WHEN r.retrain ? 'error' AND NOT r.retrain ? 'new_model_id' THEN 'retrain failed'
                WHEN NOT r.retrain ? 'new_model_id' THEN 'retrain skipped' ELSE 'retrain kept' END,
           (r.retrain ->> 'new_model_id')::bigint, (r.retrain ->> 'new_version')::integer,
           concat_ws('; ', r.retrain ->> 'reason', r.retrain ->> 'error', 'report ' || r.id)
      FROM pgmodels.drift_report r JOIN pgmodels.projects p ON p.id = r.project_id
     WHERE r.retrain IS NOT NULL
) e
WHERE pgmodels._may(pgmodels._me(), e.project_id, 'use');
COMMENT ON VIEW pgmodels.history IS 'what happened to each project the current role may use: versions trained, imported or retrained, deployments and rollbacks, drift reports (for its owner and monitor grantees), and every retrain decision with its reason';
GRANT SELECT ON pgmodels.history TO PUBLIC;

CREATE OR REPLACE VIEW pgmodels.request_logs WITH (security_barrier) AS
SELECT l.id, l.at, l.project, l.model_id, l.model_version, l.role, l.transport, l.request_id, l.rows, l.status,
       l.error, l.latency_ms
FROM pgmodels.request_log l
WHERE pgmodels._may(pgmodels._me(), l.project_id, 'owner');
COMMENT ON VIEW pgmodels.request_logs IS 'the logged requests of pgmodels serve to the projects the current role owns: which model version answered whom, when, how fast';
GRANT SELECT ON pgmodels.request_logs TO PUBLIC;
