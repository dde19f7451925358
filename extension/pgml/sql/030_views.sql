-- PostgresML's catalog views over pgmodels' catalog: pgml.projects, models, deployments,
-- snapshots, and the overview, trained_models and deployed_models views PostgresML's
-- examples query, with PostgresML's column names and types (timestamps without time
-- zone, y_column_name text[]). Columns PostgresML does not have come last.
--
-- Who sees what: like pgmodels.overview, each view reads the catalog with its owner's
-- rights and shows only the projects the current role may use (owns, or was granted
-- predict or export on), checked by pgmodels._may; security_barrier, so that no
-- condition of the caller's sees a row before that filter has.
--
-- Snapshots: pgmodels keeps what each training read (relation, target, split) with the
-- model, so there is one snapshot per model and its id is the model's id. A snapshot is
-- materialized when train(..., materialize_snapshot => true) copied the rows into a
-- table of pgmodels' own (its name and row count in the model's training record).
CREATE OR REPLACE VIEW pgml.projects WITH (security_barrier) AS
SELECT p.id, p.name, p.task,
       p.created_at::timestamp AS created_at,
       coalesce((SELECT max(m.trained_at) FROM pgmodels.models m WHERE m.project_id = p.id), p.created_at)::timestamp AS updated_at,
       p.owner::text AS owner
FROM pgmodels.projects p
WHERE pgmodels._may(pgmodels._me(), p.id, 'use');
COMMENT ON VIEW pgml.projects IS 'PostgresML''s projects: one row per pgmodels project the current role may use';

CREATE OR REPLACE VIEW pgml.models WITH (security_barrier) AS
SELECT m.id, m.project_id,
       m.id AS snapshot_id,
       cardinality(m.feature_names) AS num_features,
       m.algorithm,
       m.runtime,
       m.hyperparams,
       'successful'::text AS status,
       m.metrics,
       m.training #>> '{search,search}' AS search,
       coalesce(m.training #> '{search,search_params}', '{}') AS search_params,
       coalesce(m.training #> '{search,search_args}', '{}') AS search_args,
       m.trained_at::timestamp AS created_at,
       m.trained_at::timestamp AS updated_at,
       m.version,
       m.task
FROM pgmodels.models m
JOIN pgmodels.projects p ON p.id = m.project_id
WHERE pgmodels._may(pgmodels._me(), p.id, 'use');
COMMENT ON VIEW pgml.models IS 'PostgresML''s models: one row per model version of the projects the current role may use (snapshot_id is the model''s own id)';

CREATE OR REPLACE VIEW pgml.deployments WITH (security_barrier) AS
SELECT d.id, d.project_id, d.model_id,
       CASE d.strategy WHEN 'automatic' THEN 'new_score' WHEN 'model_id' THEN 'specific' ELSE d.strategy END AS strategy,
       d.deployed_at::timestamp AS created_at
FROM pgmodels.deployments d
WHERE pgmodels._may(pgmodels._me(), d.project_id, 'use');
COMMENT ON VIEW pgml.deployments IS 'PostgresML''s deployments: the deployment history of the projects the current role may use (pgmodels'' automatic deployment shows as new_score, a deployment by id as specific)';

CREATE OR REPLACE VIEW pgml.snapshots WITH (security_barrier) AS
SELECT m.id,
       m.training ->> 'relation' AS relation_name,
       CASE WHEN m.training ? 'y_columns' THEN ARRAY(SELECT jsonb_array_elements_text(m.training -> 'y_columns'))
            WHEN m.training ->> 'y_column' IS NOT NULL THEN ARRAY[m.training ->> 'y_column'] END AS y_column_name,
       (m.training ->> 'test_size')::real AS test_size,
       m.training ->> 'test_sampling' AS test_sampling,
       'complete'::text AS status,
       NULL::jsonb AS columns,
       NULL::jsonb AS analysis,
       m.trained_at::timestamp AS created_at,
       m.trained_at::timestamp AS updated_at,
       m.training ? 'snapshot' AS materialized,
       m.training #>> '{snapshot,relation}' AS snapshot_relation,
       coalesce((m.training #>> '{snapshot,rows}')::bigint, (m.training ->> 'rows')::bigint) AS rows
FROM pgmodels.models m
WHERE pgmodels._may(pgmodels._me(), m.project_id, 'use');
COMMENT ON VIEW pgml.snapshots IS 'PostgresML''s snapshots: what each model of the projects the current role may use was trained on (one per model, with the model''s id); materialized when its rows were copied into a snapshot table';

CREATE OR REPLACE VIEW pgml.overview WITH (security_barrier) AS
SELECT p.name, d.created_at AS deployed_at, p.task, m.algorithm, m.runtime,
       s.relation_name, s.y_column_name, s.test_sampling, s.test_size
FROM pgml.projects p
JOIN pgml.models m ON p.id = m.project_id
JOIN pgml.deployments d ON d.project_id = p.id AND d.model_id = m.id
JOIN pgml.snapshots s ON s.id = m.snapshot_id
ORDER BY d.created_at DESC;
COMMENT ON VIEW pgml.overview IS 'PostgresML''s overview: every deployment of the projects the current role may use, newest first, with what its model was trained on';

CREATE OR REPLACE VIEW pgml.trained_models WITH (security_barrier) AS
SELECT m.id, p.name, p.task, m.algorithm, m.runtime, m.created_at, s.test_sampling, s.test_size,
       d.model_id IS NOT NULL AS deployed
FROM pgml.projects p
JOIN pgml.models m ON p.id = m.project_id
JOIN pgml.snapshots s ON s.id = m.snapshot_id
LEFT JOIN (SELECT DISTINCT ON (project_id) project_id, model_id, created_at
           FROM pgml.deployments ORDER BY project_id, created_at DESC, id DESC) d ON d.model_id = m.id
ORDER BY m.created_at DESC;
COMMENT ON VIEW pgml.trained_models IS 'PostgresML''s trained_models: every model version of the projects the current role may use, newest first, and whether it is deployed';

CREATE OR REPLACE VIEW pgml.deployed_models WITH (security_barrier) AS
SELECT m.id, p.name, p.task, m.algorithm, m.runtime, d.created_at AS deployed_at
FROM pgml.projects p
JOIN (SELECT DISTINCT ON (project_id) project_id, model_id, created_at
      FROM pgml.deployments ORDER BY project_id, created_at DESC, id DESC) d ON d.project_id = p.id
JOIN pgml.models m ON m.id = d.model_id
ORDER BY p.name ASC;
COMMENT ON VIEW pgml.deployed_models IS 'PostgresML''s deployed_models: the model each project the current role may use serves';

GRANT SELECT ON pgml.projects, pgml.models, pgml.deployments, pgml.snapshots,
                pgml.overview, pgml.trained_models, pgml.deployed_models TO PUBLIC;
