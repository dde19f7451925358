-- pgml.predict, pgml.predict_proba and pgml.predict_batch: PostgresML's names over
-- pgmodels' serving functions, one SQL wrapper per pgmodels overload (a project by name
-- or a model by id; features as an array of any numeric type or boolean, a jsonb object,
-- or a row). Each wrapper is one SELECT, which PostgreSQL inlines into the query, so a
-- pgml.predict costs what pgmodels' predict costs (benchmarks/bench_pgml.py measures it).
-- Results are PostgresML's: real for predict, real[] for predict_proba, SETOF real for
-- predict_batch. The privilege checks are pgmodels' (predict on the project).
DO $pgml$
DECLARE
    s text := (SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_extension e
               JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pgmodels');
    answer record;
    target text;
    ftype text;
BEGIN
    FOR answer IN SELECT * FROM (VALUES
        ('predict', 'real', 'the prediction (class or value)'),
        ('predict_proba', 'real[]', 'the class probabilities, in the order of the model''s labels')) AS a(name, rettype, what)
    LOOP
        FOREACH target IN ARRAY ARRAY['project_name text', 'model_id bigint'] LOOP
            FOREACH ftype IN ARRAY ARRAY['real[]', 'double precision[]', 'numeric[]', 'integer[]', 'bigint[]',
                                         'smallint[]', 'boolean[]', 'jsonb', 'anyelement'] LOOP
                EXECUTE pg_catalog.format('CREATE OR REPLACE FUNCTION pgml.%I(%s, %s %s) RETURNS %s '
                               'LANGUAGE sql STABLE PARALLEL SAFE AS %L',
                               answer.name, target, CASE WHEN ftype = 'anyelement' THEN '"row"' ELSE 'features' END,
                               ftype, answer.rettype,
                               pg_catalog.format('SELECT %s.%I($1, $2)', s, answer.name));
                EXECUTE pg_catalog.format('COMMENT ON FUNCTION pgml.%I(%s, %s) IS %L', answer.name, pg_catalog.split_part(target, ' ', 2), ftype,
                               pg_catalog.format('PostgresML''s %s(): %s, from %s (pgmodels'' %s)', answer.name, answer.what,
                                      CASE ftype WHEN 'anyelement' THEN 'a row' WHEN 'jsonb' THEN 'a jsonb object'
                                                 ELSE 'features as ' || ftype END, answer.name));
            END LOOP;
        END LOOP;
    END LOOP;
    -- predict_batch: as PostgresML's (pgml-extension/src/api.rs, bindings/sklearn), the
    -- model's outputs for every row, flattened row by row: one value per row for a
    -- classifier or a regressor of one target, one per target for a joint regression model
    -- and one per component for a PCA model (rows x outputs values).
    FOREACH target IN ARRAY ARRAY['project_name text', 'model_id bigint'] LOOP
        EXECUTE pg_catalog.format($f$
CREATE OR REPLACE FUNCTION pgml.predict_batch(%1$s, features real[]) RETURNS SETOF real
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE ROWS 1000 SET search_path = pg_catalog, pg_temp
AS $b$
DECLARE
    kind text;
    n integer;
    total integer := pg_catalog.cardinality(features);
    fn text;
BEGIN
    SELECT CASE WHEN m.task = 'decomposition' THEN 'decompose'
                WHEN pg_catalog.cardinality(sn.y_column_name) > 1 THEN 'predict_joint' END, m.num_features
      INTO kind, n
      FROM pgml.models m JOIN pgml.snapshots sn ON sn.id = m.id
     WHERE m.id = %2$s;
    IF kind IS NULL OR n IS NULL OR n = 0 OR total %% n <> 0 THEN  -- one value per row (or pgmodels' error)
        RETURN QUERY SELECT %3$s.predict_batch($1, $2);
        RETURN;
    END IF;
    FOR r IN 0 .. total / n - 1 LOOP
        RETURN QUERY EXECUTE pg_catalog.format('SELECT pg_catalog.unnest(%3$s.%%I($1, $2))', kind)
            USING $1, features[r * n + 1:(r + 1) * n];
    END LOOP;
END
$b$
$f$, target,
            CASE WHEN target LIKE 'model_id%' THEN '$1'
                 ELSE '(SELECT d.id FROM pgml.deployed_models d WHERE d.name = $1)' END, s);
        EXECUTE pg_catalog.format('COMMENT ON FUNCTION pgml.predict_batch(%s, real[]) IS %L', pg_catalog.split_part(target, ' ', 2),
                       'PostgresML''s predict_batch(): the model''s outputs for rows given flattened into one array, flattened row by row (one per row; one per target or component for joint regression and PCA models)');
    END LOOP;
END
$pgml$;
