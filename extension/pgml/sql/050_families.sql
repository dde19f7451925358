-- pgml.train_joint, pgml.predict_joint, pgml.decompose and pgml.snapshot over pgmodels'
-- train_joint(), predict_joint(), decompose() and snapshot() (sql/120_families.sql).
DO $pgml$
DECLARE
    s text := (SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_extension e
               JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pgmodels');
    fn text;
    target text;
    ftype text;
BEGIN
EXECUTE pg_catalog.replace($sql$

CREATE OR REPLACE FUNCTION pgml.train_joint(
    project_name text,
    task text DEFAULT NULL,
    relation_name text DEFAULT NULL,
    y_column_name text[] DEFAULT NULL,
    algorithm text DEFAULT 'linear',
    hyperparams jsonb DEFAULT '{}',
    search text DEFAULT NULL,
    search_params jsonb DEFAULT '{}',
    search_args jsonb DEFAULT '{}',
    test_size real DEFAULT 0.25,
    test_sampling text DEFAULT 'stratified',
    runtime text DEFAULT NULL,
    automatic_deploy boolean DEFAULT true,
    materialize_snapshot boolean DEFAULT false,
    preprocess jsonb DEFAULT '{}')
RETURNS TABLE (project text, task text, algorithm text, deployed boolean)
LANGUAGE sql VOLATILE
AS $$
    SELECT t.project, t.task, t.algorithm, t.deployed
      FROM @pgmodels@.train_joint(
          $1, $2, $3, $4, $5, $6, $7, nullif($8, '{}'), nullif($9, '{}'),
          CASE WHEN $3 IS NOT NULL THEN $10 END, CASE WHEN $3 IS NOT NULL THEN $11 END,
          CASE WHEN pgml._check_runtime($12) THEN coalesce($13, false) END,
          CASE WHEN $3 IS NOT NULL THEN nullif($15, '{}') END, $14) t
$$;
COMMENT ON FUNCTION pgml.train_joint(text, text, text, text[], text, jsonb, text, jsonb, jsonb, real, text, text, boolean, boolean, jsonb) IS 'PostgresML''s train_joint(): trains a joint regression model on several target columns with pgmodels'' train_joint()';

CREATE OR REPLACE FUNCTION pgml.snapshot(relation_name text, y_column_name text, test_size real DEFAULT 0.25,
                                         test_sampling text DEFAULT 'stratified', preprocess jsonb DEFAULT '{}')
RETURNS TABLE (relation text, y_column_name text)
LANGUAGE sql VOLATILE
AS $$ SELECT s.relation, $2 FROM @pgmodels@.snapshot($1) s $$;
COMMENT ON FUNCTION pgml.snapshot(text, text, real, text, jsonb) IS 'PostgresML''s snapshot(): copies a relation''s rows into a snapshot table (pgmodels'' snapshot()); returns the snapshot table and the target column';

$sql$, '@pgmodels@', s);
    FOREACH fn IN ARRAY ARRAY['predict_joint', 'decompose'] LOOP
        FOREACH target IN ARRAY ARRAY['project_name text', 'model_id bigint'] LOOP
            FOREACH ftype IN ARRAY ARRAY['real[]', 'double precision[]', 'numeric[]', 'integer[]', 'bigint[]',
                                         'smallint[]', 'jsonb'] LOOP
                EXECUTE pg_catalog.format('CREATE OR REPLACE FUNCTION pgml.%I(%s, features %s) RETURNS real[] '
                               'LANGUAGE sql STABLE PARALLEL SAFE AS %L',
                               fn, target, ftype, pg_catalog.format('SELECT %s.%I($1, $2)', s, fn));
                EXECUTE pg_catalog.format('COMMENT ON FUNCTION pgml.%I(%s, %s) IS %L', fn, pg_catalog.split_part(target, ' ', 2), ftype,
                               pg_catalog.format('PostgresML''s %s(): %s (pgmodels'' %s)', fn,
                                      CASE fn WHEN 'decompose' THEN 'a PCA model''s components'
                                              ELSE 'a joint regression model''s values, one per target' END, fn));
            END LOOP;
        END LOOP;
    END LOOP;
END
$pgml$;
