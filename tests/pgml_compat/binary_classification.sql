-- pgml compatibility, binary classification: PostgresML's breast_cancer data set (a
-- boolean target, 30 real columns whose names need quoting), trained first with
-- pgml.train's positional form, then once per classifier PostgresML names, a grid
-- search, and each deploy strategy in turn, checking what every call returned.
--
-- Run by tests/test_pgml_compat.py, or by hand on a database with pgmodels_pgml:
--     psql -X -f tests/pgml_compat/binary_classification.sql "$DATABASE_URL"
\ir expect.psql
\set project 'Tumour Malignancy'

-- load_dataset returns the table it (re)created and its row count.
SELECT table_name AS loaded, rows AS loaded_rows FROM pgml.load_dataset('breast_cancer') \gset
SELECT pg_temp.expect(:'loaded' = 'pgml.breast_cancer' AND :loaded_rows = 569, 'load_dataset made pgml.breast_cancer');

-- The feature list, in table order and quoted as PostgresML's users write it by hand:
-- ARRAY["mean radius", "mean texture", ..., "worst fractal dimension"].
SELECT 'ARRAY[' || string_agg(quote_ident(attname), ', ' ORDER BY attnum) || ']' AS features
  FROM pg_attribute
 WHERE attrelid = 'pgml.breast_cancer'::regclass AND attnum > 0 AND NOT attisdropped AND attname <> 'malignant' \gset
SELECT pg_temp.expect(:'features' LIKE 'ARRAY["mean radius", %"worst fractal dimension"]', '30 quoted feature columns');

-- The first training names project, task, relation and target by position; algorithm
-- is left at PostgresML's default, linear, and the first model is deployed.
SELECT project, task, algorithm, deployed FROM pgml.train(:'project', 'classification', 'pgml.breast_cancer', 'malignant') \gset first_
SELECT pg_temp.expect(:'first_project' = :'project' AND :'first_task' = 'classification'
                      AND :'first_algorithm' = 'linear' AND :'first_deployed', 'train returned (project, task, linear, deployed)');

-- predict answers with the class as a real, predict_proba with one probability per class
-- (false, true), and the likelier class is the prediction.
SELECT pg_temp.expect(bool_and(answer.label IN (0, 1) AND cardinality(answer.proba) = 2
                               AND abs(answer.proba[1] + answer.proba[2] - 1) < 1e-4
                               AND answer.label = (answer.proba[2] > answer.proba[1])::int),
                      'predict and predict_proba agree on every row')
  FROM (SELECT pgml.predict(:'project', :features) AS label,
               pgml.predict_proba(:'project', :features) AS proba
          FROM pgml.breast_cancer) AS answer;

-- Every classifier PostgresML's example trains on this data, by name, each on the
-- project's first data and split (no relation_name: the last one is reused). One
-- statement per algorithm, as a user types them, generated from the table below.
CREATE TEMP TABLE sweep (algorithm text PRIMARY KEY, hyperparams jsonb);
INSERT INTO sweep VALUES
    ('ridge', NULL), ('stochastic_gradient_descent', NULL), ('perceptron', NULL), ('passive_aggressive', NULL),
    ('svm', NULL), ('nu_svm', NULL), ('linear_svm', NULL),
    ('ada_boost', NULL), ('bagging', NULL),
    ('extra_trees', '{"n_estimators": 10}'), ('gradient_boosting_trees', '{"n_estimators": 10}'),
    ('random_forest', '{"n_estimators": 10}'), ('xgboost', '{"n_estimators": 10}');
SELECT format('SELECT * FROM pgml.train(%L, algorithm => %L%s)', :'project', algorithm,
              CASE WHEN hyperparams IS NOT NULL THEN format(', hyperparams => %L', hyperparams) END)
  FROM sweep ORDER BY algorithm \gexec

SELECT pg_temp.expect(count(*) = (SELECT count(*) FROM sweep), 'a scored model per algorithm, with its hyperparams')
  FROM sweep s
 WHERE EXISTS (SELECT FROM pgml.models m JOIN pgml.projects p ON p.id = m.project_id
                WHERE p.name = :'project' AND m.algorithm = s.algorithm AND m.status = 'successful'
                  AND m.metrics ? 'f1' AND m.hyperparams @> coalesce(s.hyperparams, '{}'));

-- trained_models: PostgresML's columns, every model once, one of them deployed.
SELECT pg_temp.expect(array_agg(column_name::text ORDER BY ordinal_position)
                      = '{id,name,task,algorithm,runtime,created_at,test_sampling,test_size,deployed}',
                      'pgml.trained_models has PostgresML''s columns')
  FROM information_schema.columns WHERE table_schema = 'pgml' AND table_name = 'trained_models';
SELECT pg_temp.expect(count(*) = 1 + (SELECT count(*) FROM sweep) AND count(*) FILTER (WHERE t.deployed) = 1,
                      'every model listed once, one of them deployed')
  FROM pgml.trained_models t WHERE t.name = :'project';
-- the five best by f1, as PostgresML's users list them
SELECT t.id, t.algorithm, m.metrics ->> 'f1' AS f1
  FROM pgml.trained_models t JOIN pgml.models m ON m.id = t.id
 WHERE t.name = :'project'
 ORDER BY m.metrics ->> 'f1' DESC LIMIT 5;

-- deploy(project, strategy, algorithm) returns (project, strategy, algorithm) and
-- deployed_models shows the model each project now serves.
SELECT * FROM pgml.deploy(:'project', 'most_recent', 'random_forest') \gset chosen_
SELECT pg_temp.expect(:'chosen_project' = :'project' AND :'chosen_strategy' = 'most_recent'
                      AND :'chosen_algorithm' = 'random_forest', 'deploy most_recent random_forest');
SELECT pg_temp.expect(bool_and(algorithm = 'random_forest' AND task = 'classification'), 'deployed_models shows the random forest')
  FROM pgml.deployed_models WHERE name = :'project';
SELECT id AS forest_id FROM pgml.deployed_models WHERE name = :'project' \gset

-- A grid search over two xgboost hyperparameters (2 x 3 candidates), called without FROM.
SELECT pgml.train(:'project', algorithm => 'xgboost', search => 'grid',
                  search_params => '{"max_depth": [1, 2, 3], "n_estimators": [2, 4]}') AS searched \gset
SELECT pg_temp.expect(:'searched' LIKE '(%,classification,xgboost,%)', 'the search trained an xgboost model');
SELECT pg_temp.expect(bool_and((hyperparams ->> 'max_depth')::int IN (1, 2, 3) AND (hyperparams ->> 'n_estimators')::int IN (2, 4)),
                      'the searched model keeps one of the candidates')
  FROM pgml.models WHERE id = (SELECT max(m.id) FROM pgml.models m JOIN pgml.projects p ON p.id = m.project_id
                                WHERE p.name = :'project');

-- The strategies, by position and by name. best_score serves the highest f1; most_recent
-- the newest model (the search's); rollback serves the model deployed before the current
-- one (the best, or the random forest if the search was the best), and a second
-- rollback comes back.
SELECT max((m.metrics ->> 'f1')::float) AS best_f1, max(m.id) AS newest_id
  FROM pgml.models m JOIN pgml.projects p ON p.id = m.project_id WHERE p.name = :'project' \gset
SELECT * FROM pgml.deploy(:'project', 'best_score');
SELECT d.id AS best_id, (m.metrics ->> 'f1')::float = :best_f1 AS best_is_best
  FROM pgml.deployed_models d JOIN pgml.models m ON m.id = d.id WHERE d.name = :'project' \gset
SELECT pg_temp.expect(:'best_is_best', 'best_score serves the highest f1');
SELECT * FROM pgml.deploy(project_name => :'project', strategy => 'most_recent');
SELECT pg_temp.expect(bool_and(id = :newest_id), 'most_recent serves the newest model') FROM pgml.deployed_models WHERE name = :'project';
SELECT strategy AS rolled FROM pgml.deploy(:'project', strategy => 'rollback') \gset
SELECT pg_temp.expect(:'rolled' = 'rollback' AND bool_and(id = CASE WHEN :best_id <> :newest_id THEN :best_id ELSE :forest_id END),
                      'rollback serves the model deployed before')
  FROM pgml.deployed_models WHERE name = :'project';
SELECT * FROM pgml.deploy(:'project', strategy => 'rollback');
SELECT pg_temp.expect(bool_and(id = :newest_id), 'a second rollback comes back') FROM pgml.deployed_models WHERE name = :'project';

-- A model by id: deploy(model_id) is the 'specific' strategy; predict(model_id, ...)
-- answers with that model whatever is deployed.
SELECT min(m.id) AS linear_id FROM pgml.models m JOIN pgml.projects p ON p.id = m.project_id WHERE p.name = :'project' \gset
SELECT * FROM pgml.deploy(:linear_id) \gset by_id_
SELECT pg_temp.expect(:'by_id_strategy' = 'specific' AND :'by_id_algorithm' = 'linear', 'deploy(model_id) is specific');
SELECT pg_temp.expect(count(*) = 0, 'predict by id and by project agree while the model is deployed')
  FROM pgml.breast_cancer WHERE pgml.predict(:linear_id, :features) <> pgml.predict(:'project', :features);

-- Last, the best svm; every deployment so far is in the overview, newest first.
SELECT * FROM pgml.deploy(project_name => :'project', strategy => 'best_score', algorithm => 'svm') \gset last_
SELECT pg_temp.expect(:'last_algorithm' = 'svm' AND :'last_strategy' = 'best_score', 'deploy best_score among svm models');
SELECT pg_temp.expect(count(*) >= 8 AND bool_and(algorithm IS NOT NULL AND relation_name = 'pgml.breast_cancer'
                                                 AND y_column_name = '{malignant}'),
                      'the overview lists every deployment with its data')
  FROM pgml.overview WHERE name = :'project';
SELECT pg_temp.expect((array_agg(algorithm ORDER BY deployed_at DESC))[1] = 'svm', 'the overview''s newest deployment is the svm')
  FROM pgml.overview WHERE name = :'project';

-- predictions of the svm beside the truth
SELECT malignant, pgml.predict(:'project', :features) AS prediction FROM pgml.breast_cancer LIMIT 10;
