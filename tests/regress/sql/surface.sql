-- The SQL surface: what CREATE EXTENSION makes, and the errors that need no model.
\set SHOW_CONTEXT never
SELECT extversion, extrelocatable FROM pg_extension WHERE extname = 'pgmodels';

-- the catalog tables and the overview view
SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'pgmodels' AND c.relkind IN ('r', 'v') ORDER BY 1;

-- the user-facing functions: name, how many overloads, volatility, parallel safety
SELECT p.proname, count(*) AS overloads, string_agg(DISTINCT p.provolatile::text, ',') AS volatility,
       string_agg(DISTINCT p.proparallel::text, ',') AS parallel
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'public' AND p.proname IN ('train', 'deploy', 'predict', 'predict_proba', 'predict_label',
                                             'predict_batch', 'import_onnx', 'export_onnx')
GROUP BY 1 ORDER BY 1;

-- who may run what, by default
SELECT p.proname, has_function_privilege('public', p.oid, 'EXECUTE') AS public_may_execute
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'public' AND p.proname IN ('train', 'deploy', 'import_onnx', 'export_onnx', 'predict')
GROUP BY 1, 2 ORDER BY 1;

-- errors in PostgreSQL's style, before any model exists
SELECT predict('nothing_here', ARRAY[1, 2]);
SELECT predict_proba(42::bigint, ARRAY[1, 2]);
SELECT * FROM deploy('nothing_here', 'best_score');
SELECT * FROM deploy(42::bigint);
SELECT export_onnx('nothing_here');
SELECT * FROM train('new_project');
SELECT * FROM train('new_project', 'clustering', 'pg_class', 'relname');
SELECT * FROM train('new_project', 'regression', 'no_such_table', 'y');
SELECT * FROM train('new_project', 'regression', 'pg_catalog.pg_class', 'no_such_column');
SELECT * FROM train('', 'regression', 'pg_class', 'relpages');
SELECT count(*) AS projects FROM pgmodels.projects;
SELECT * FROM pgmodels.overview;

-- 0.2.0: project privileges and caller credentials
SELECT grant_project('nothing_here', 'public', 'predict');
SELECT grant_project('nothing_here', 'public', 'train');
SELECT has_project_privilege('no_such_role', 'nothing_here', 'predict');
SELECT pgmodels._verify_caller('1:forged');
SELECT pgmodels._verify_caller(pgmodels._credential()) = (SELECT oid FROM pg_roles WHERE rolname = current_user) AS own_credential;
SELECT * FROM pgmodels._store_model('no token');
SELECT count(*) FROM pgmodels.project_privileges;
