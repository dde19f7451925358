-- pgmodels 0.1.0 -> 0.2.0. Built by extension/Makefile: this prelude, then sql/015_* to
-- sql/090_* as they are (every function and view there is CREATE OR REPLACE, so
-- functions whose signature did not change keep their GRANTs), then the epilogue.
\echo Use "ALTER EXTENSION pgmodels UPDATE" to load this file. \quit

-- The master switch: an administrator may have revoked pgmodels._lookup from PUBLIC.
-- Its signature changes, so its ACL is carried over to the new one (see the epilogue).
SELECT pg_catalog.set_config('pgmodels.upgrade_lookup_acl',
       coalesce((SELECT p.proacl::text FROM pg_catalog.pg_proc p
                  WHERE p.oid = 'pgmodels._lookup(text, bigint)'::regprocedure), ''), true);

-- train() gained materialize_snapshot (issue #14): who may train is carried over from
-- the old signature's grants to the new one (see the epilogue).
SELECT pg_catalog.set_config('pgmodels.upgrade_train_acl',
       coalesce((SELECT p.proacl::text FROM pg_catalog.pg_proc p
                  WHERE p.oid = '@extschema@.train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb)'::regprocedure), ''), true);
DROP FUNCTION @extschema@.train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb);
DROP FUNCTION pgmodels._train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb);

-- Functions whose signature or result changed, and the record type the old cores took.
DROP FUNCTION pgmodels._activate(text, text);
DROP FUNCTION pgmodels._pending_error();
DROP FUNCTION pgmodels._project_info(text);
DROP FUNCTION pgmodels._store_model(text, text, text, text, bytea, jsonb, jsonb, jsonb, text[], text[], jsonb, jsonb,
                                    jsonb, jsonb, text);
DROP FUNCTION pgmodels._deploy_strategy(text, text, text);
DROP FUNCTION pgmodels._deploy_model(bigint);
DROP FUNCTION pgmodels._lookup(text, bigint);
DROP FUNCTION pgmodels._predict(text, bigint, double precision[], timestamptz, pgmodels.served_model),
              pgmodels._predict(text, bigint, jsonb, timestamptz, pgmodels.served_model),
              pgmodels._predict_proba(text, bigint, double precision[], timestamptz, pgmodels.served_model),
              pgmodels._predict_proba(text, bigint, jsonb, timestamptz, pgmodels.served_model),
              pgmodels._predict_label(text, bigint, double precision[], timestamptz, pgmodels.served_model),
              pgmodels._predict_label(text, bigint, jsonb, timestamptz, pgmodels.served_model),
              pgmodels._predict_batch(text, bigint, bytea, timestamptz, pgmodels.served_model);
DROP TYPE pgmodels.served_model;

-- Projects get owners: the role that created them, where it still exists, else the
-- extension's owner.
ALTER TABLE pgmodels.projects ADD COLUMN owner regrole;
UPDATE pgmodels.projects p
   SET owner = coalesce((SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = p.created_by),
                        (SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname = 'pgmodels'))::regrole;
ALTER TABLE pgmodels.projects ALTER COLUMN owner SET NOT NULL;

-- Models served natively by skops can be stored; a deployment's model belongs to its project.
ALTER TABLE pgmodels.models
    DROP CONSTRAINT models_runtime_check,
    ADD CONSTRAINT models_runtime_check CHECK (runtime IN ('onnx', 'xgboost-ubj', 'skops')),
    ADD CONSTRAINT models_project_id_id_key UNIQUE (project_id, id);
ALTER TABLE pgmodels.deployments
    ADD CONSTRAINT deployments_strategy_check
        CHECK (strategy IN ('automatic', 'import', 'best_score', 'most_recent', 'rollback', 'model_id')),
    ADD CONSTRAINT deployments_project_model_fkey FOREIGN KEY (project_id, model_id)
        REFERENCES pgmodels.models (project_id, id) ON DELETE CASCADE;
COMMENT ON TABLE pgmodels.deployments IS 'the full deployment history; the newest row of a project is its deployed model';
