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
                EXECUTE format('CREATE OR REPLACE FUNCTION pgml.%I(%s, %s %s) RETURNS %s '
                               'LANGUAGE sql STABLE PARALLEL SAFE AS %L',
                               answer.name, target, CASE WHEN ftype = 'anyelement' THEN '"row"' ELSE 'features' END,
                               ftype, answer.rettype,
                               format('SELECT %s.%I($1, $2)', s, answer.name));
                EXECUTE format('COMMENT ON FUNCTION pgml.%I(%s, %s) IS %L', answer.name, split_part(target, ' ', 2), ftype,
                               format('PostgresML''s %s(): %s, from %s (pgmodels'' %s)', answer.name, answer.what,
                                      CASE ftype WHEN 'anyelement' THEN 'a row' WHEN 'jsonb' THEN 'a jsonb object'
                                                 ELSE 'features as ' || ftype END, answer.name));
            END LOOP;
        END LOOP;
    END LOOP;
    FOREACH target IN ARRAY ARRAY['project_name text', 'model_id bigint'] LOOP
        EXECUTE format('CREATE OR REPLACE FUNCTION pgml.predict_batch(%s, features real[]) RETURNS SETOF real '
                       'LANGUAGE sql STABLE STRICT PARALLEL SAFE ROWS 1000 AS %L',
                       target, format('SELECT %s.predict_batch($1, $2)', s));
        EXECUTE format('COMMENT ON FUNCTION pgml.predict_batch(%s, real[]) IS %L', split_part(target, ' ', 2),
                       'PostgresML''s predict_batch(): one prediction per row for rows given flattened into one array (pgmodels'' predict_batch)');
    END LOOP;
END
$pgml$;
