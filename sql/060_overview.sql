-- What is there: one row per model version, of the projects the current role owns or was
-- granted predict or export on (the view reads the catalog with its owner's rights and
-- filters by current_user; security_barrier, so that no condition of the caller's sees
-- a row before that filter has).
CREATE OR REPLACE VIEW pgmodels.overview WITH (security_barrier) AS
SELECT p.name AS project,
       m.id AS model_id,
       m.version,
       m.task,
       m.algorithm,
       m.runtime,
       pgmodels._key_metric(m.task, m.metrics) AS key_metric,
       m.metrics,
       (m.id = d.model_id) IS TRUE AS deployed,
       m.trained_at,
       m.trained_by,
       length(m.artifact) AS artifact_bytes,
       p.owner::text AS owner,
       m.training -> 'retrain' AS retrain
FROM pgmodels.models m
JOIN pgmodels.projects p ON p.id = m.project_id
LEFT JOIN LATERAL (SELECT d.model_id FROM pgmodels.deployments d
                   WHERE d.project_id = p.id ORDER BY d.id DESC LIMIT 1) d ON true
WHERE pgmodels._may(pgmodels._me(), p.id, 'use');
COMMENT ON VIEW pgmodels.overview IS 'one row per model version of the projects the current role may use: project, version, algorithm, key metric (f1 or r2), deployed or not, who trained it when, artifact size, owner, and for a version a monitor retrained: the model and drift report it answered (see pgmodels.history for every retrain decision)';
GRANT SELECT ON pgmodels.overview TO PUBLIC;
