-- pgmodels 0.2.0 -> 0.3.0. Built by extension/Makefile: this prelude, then every file of
-- sql/ that is not created once (functions and views: CREATE OR REPLACE, so functions
-- whose signature did not change keep their grants) and the files new in 0.3.0, then
-- the epilogue.
\echo Use "ALTER EXTENSION pgmodels UPDATE" to load this file. \quit

-- Names resolve in pg_catalog only, as in the install (sql/000_search_path.sql, replayed
-- below, says why).
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

-- Open to PUBLIC from 0.3.0 (a snapshot's caller converts its columns to the types it
-- names, sql/120_families.sql): granted before the grants are saved, so that the epilogue
-- does not take 0.2.0's own revoke for an administrator's.
GRANT EXECUTE ON FUNCTION pgmodels._snapshot_type(oid, integer) TO PUBLIC;

-- Every operator of a statement or DO block here and in the epilogue is pg_catalog's,
-- named so, on operands of one type: an extension script runs with the extension's
-- schema on its search path, where a role with CREATE could put an operator for a pair of
-- types pg_catalog compares only by coercion, and it would run as the superuser.

-- The grants of every function, as an administrator left them: replaying the sources
-- re-runs their GRANT and REVOKE statements, and the epilogue puts back what an
-- administrator had changed (a function revoked from PUBLIC, granted to a role).
SELECT pg_catalog.set_config('pgmodels.upgrade_acls', coalesce((
    SELECT pg_catalog.jsonb_object_agg(p.oid::pg_catalog.regprocedure::text, coalesce(p.proacl::text, ''))
      FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_depend d
        ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid
       AND d.objid OPERATOR(pg_catalog.=) p.oid AND d.deptype OPERATOR(pg_catalog.=) 'e'::"char"
      JOIN pg_catalog.pg_extension e ON e.oid OPERATOR(pg_catalog.=) d.refobjid
       AND e.extname OPERATOR(pg_catalog.=) 'pgmodels'::pg_catalog.name), '{}')::text, true);

-- The monitor privilege (sql/015_catalog_grants.sql): drift statistics against a project's
-- training profile, granted by name; and the explain privilege (explain_prediction() and
-- the contributions outputs: per-feature contributions), also granted by name.
ALTER TABLE pgmodels.project_grants DROP CONSTRAINT project_grants_privilege_check,
    ADD CONSTRAINT project_grants_privilege_check CHECK (privilege IN ('predict', 'export', 'monitor', 'explain'));
COMMENT ON TABLE pgmodels.project_grants IS 'per-project privileges the owner granted: predict, export, monitor and explain, to roles or PUBLIC (grantee 0)';

-- What a monitor's retrain trains when it is not what the deployed version was trained
-- with (set_monitor_retrain, sql/101_monitor.sql); _monitor_get returns it too.
ALTER TABLE pgmodels.monitor ADD COLUMN retrain_with jsonb;
DROP FUNCTION pgmodels._monitor_get(text, bigint);

-- An imported model's static work estimate (python_udfs/pgmodels/catalog/onnx_cost.py),
-- which serving reads to decide which runs a cancel must be able to stop.
ALTER TYPE pgmodels.served_model ADD ATTRIBUTE work_per_row double precision;

-- A tree ensemble's trees as the C library walks them, made by train() and stored with the
-- version (sql/010_catalog.sql), which a backend's first predict() serves from without
-- starting onnxruntime; the staged model carries them (_take_staged's new OUT column).
ALTER TABLE pgmodels.models ADD COLUMN native_trees bytea;
ALTER TYPE pgmodels.served_model ADD ATTRIBUTE native_trees bytea;
DROP FUNCTION pgmodels._take_staged(text);

-- The contributions output of the vectorized path (sql/044_vectorized_types.sql): batch jobs,
-- stream consumers and pgmodels serve (explanations, sql/125_explain.sql), and the batch
-- jobs that ask for it (sql/070_batch_catalog.sql).
ALTER TYPE pgmodels.scored_rows ADD ATTRIBUTE contributions jsonb[];
-- Rollouts (sql/127_rollouts.sql): the version that answered each row, when a canary
-- splits a block between two; and promote_rollout()'s deployments.
ALTER TYPE pgmodels.scored_rows ADD ATTRIBUTE model_ids bigint[], ADD ATTRIBUTE model_versions integer[];
ALTER TABLE pgmodels.deployments DROP CONSTRAINT deployments_strategy_check,
    ADD CONSTRAINT deployments_strategy_check
    CHECK (strategy IN ('automatic', 'import', 'best_score', 'most_recent', 'rollback', 'model_id', 'rollout'));
COMMENT ON TYPE pgmodels.scored_rows IS 'internal: the answers for a block of rows, in row order; probabilities flattened, classes per row; contributions (0.3.0) per row as feature -> contribution with "(base)"; model_ids and model_versions (0.3.0) per row when a rollout split the block between two versions';
ALTER TABLE pgmodels.batch_job DROP CONSTRAINT batch_job_outputs_check,
    ADD CONSTRAINT batch_job_outputs_check CHECK (outputs <@ ARRAY['prediction', 'probabilities', 'label', 'contributions']
                                                 AND cardinality(outputs) > 0);

-- No two projects whose names differ only in case (sql/010_catalog.sql). A database that
-- has some cannot take the index: the upgrade stops and names them, for the administrator
-- to rename or drop one of each. Names that only look odd (spaces at an end, invisible
-- characters) stay as they are: the name rules apply to projects made from now on.
DO $$
DECLARE
    clashes text;
BEGIN
    SELECT pg_catalog.string_agg(c.names, '; ' ORDER BY c.names) INTO clashes
      FROM (SELECT pg_catalog.string_agg(pg_catalog.format('%L (id %s)', p.name, p.id), ', ' ORDER BY p.id) AS names
              FROM pgmodels.projects p GROUP BY pg_catalog.lower(p.name) HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 1::bigint) c;
    IF clashes IS NOT NULL THEN
        RAISE EXCEPTION 'projects whose names differ only in case: %', clashes USING ERRCODE = '23505',
            DETAIL = 'pgmodels 0.3.0 keeps project names unique regardless of case (a unique index on lower(name)): one would pass for the other in the console, in /metrics and in bundles.',
            HINT = 'Rename one of each (as a superuser: UPDATE pgmodels.projects SET name = ''...'' WHERE id = ...) or drop it (DELETE FROM pgmodels.projects WHERE id = ...), then run ALTER EXTENSION pgmodels UPDATE again.';
    END IF;
END
$$;
CREATE UNIQUE INDEX projects_name_lower_key ON pgmodels.projects (lower(name));
