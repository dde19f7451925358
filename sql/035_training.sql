-- train(): names and parameters follow PostgresML's pgml.train.
--
-- It runs with the caller's rights, so it reads only the rows and columns the caller may
-- read (row-level security included); it stores the result through
-- pgmodels._store_model(), which lets only the project's owner add versions. The core
-- pgmodels._train is executable by PUBLIC (train() calls it as the caller) and checks
-- itself that the caller may execute train(). Training runs in a child process, so
-- statement_timeout and pg_cancel_backend stop it, and the administrator's limits
-- (pgmodels.max_training_rows, max_trees, max_iterations, max_search_candidates, read
-- from the configuration files) are checked before it starts. Arguments left NULL reuse the project's previous training:
-- task, relation_name, y_column_name, test_size, test_sampling and preprocess always;
-- hyperparams, search, search_params and search_args only when algorithm is left NULL
-- too. On a project's first training the defaults are algorithm 'linear',
-- hyperparams '{}', test_size 0.25 and test_sampling 'stratified'.
-- materialize_snapshot copies the rows into a snapshot table first and trains on it (sql/120_families.sql).
CREATE OR REPLACE FUNCTION pgmodels._train(project_name text, task text, relation_name text, y_column_name text,
    algorithm text, hyperparams jsonb, search text, search_params jsonb, search_args jsonb, test_size real,
    test_sampling text, automatic_deploy boolean, preprocess jsonb, materialize_snapshot boolean)
RETURNS TABLE (project text, task text, algorithm text, deployed boolean, model_id bigint, version integer,
               runtime text, metrics jsonb)
LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return []
from pgmodels.training.udf import train; return train(project_name, task, relation_name, y_column_name, algorithm, hyperparams, search, search_params, search_args, test_size, test_sampling, automatic_deploy, preprocess, materialize_snapshot)
$$;
COMMENT ON FUNCTION pgmodels._train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean) IS 'internal: the core of train()';

CREATE OR REPLACE FUNCTION @extschema@.train(
    project_name text,
    task text DEFAULT NULL,
    relation_name text DEFAULT NULL,
    y_column_name text DEFAULT NULL,
    algorithm text DEFAULT NULL,
    hyperparams jsonb DEFAULT NULL,
    search text DEFAULT NULL,
    search_params jsonb DEFAULT NULL,
    search_args jsonb DEFAULT NULL,
    test_size real DEFAULT NULL,
    test_sampling text DEFAULT NULL,
    automatic_deploy boolean DEFAULT true,
    preprocess jsonb DEFAULT NULL,
    materialize_snapshot boolean DEFAULT false)
RETURNS TABLE (project text, task text, algorithm text, deployed boolean, model_id bigint, version integer,
               runtime text, metrics jsonb)
LANGUAGE sql VOLATILE
AS $$
    SELECT * FROM pgmodels._train($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
    UNION ALL  -- raises the error the core recorded, if any, once the core has run
    SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE pgmodels._raise_pending(NULL::boolean)
$$;
COMMENT ON FUNCTION @extschema@.train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean) IS 'trains a new model version of a project on a relation, converts it to ONNX, stores it and deploys it if it beats the deployed one';
