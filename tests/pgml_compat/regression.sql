-- pgml compatibility, regression: scikit-learn's diabetes data (ten real columns, a
-- real target). The first model by position, then predictions by project and by model
-- id, every regressor PostgresML names with the hyperparameters its users pass (and
-- PostgresML's two runtime names), a grid search with a fixed hyperparameter given as
-- jsonb, the strategies, and the shapes of pgml.models and pgml.deployed_models.
--
-- Run by tests/test_pgml_compat.py, or by hand on a database with pgmodels_pgml:
--     psql -X -f tests/pgml_compat/regression.sql "$DATABASE_URL"
\ir expect.psql
\set project 'Disease Progression'
\set patient 'ARRAY[age, sex, bmi, bp, s1, s2, s3, s4, s5, s6]'

SELECT * FROM pgml.load_dataset('diabetes') \gset loaded_
SELECT pg_temp.expect(:'loaded_table_name' = 'pgml.diabetes' AND :loaded_rows = 442, 'load_dataset made pgml.diabetes');

SELECT * FROM pgml.train(:'project', 'regression', 'pgml.diabetes', 'target') \gset first_
SELECT pg_temp.expect(:'first_task' = 'regression' AND :'first_algorithm' = 'linear' AND :'first_deployed',
                      'the first regression model is linear and deployed');
SELECT m.id AS linear_id FROM pgml.models m JOIN pgml.projects p ON p.id = m.project_id WHERE p.name = :'project' \gset

-- predict by project and by model id give the same real while that model is deployed;
-- predictions are in the target's range.
SELECT pg_temp.expect(bool_and(by_project = by_id AND by_project BETWEEN 0 AND 400), 'predict by name and by id agree')
  FROM (SELECT pgml.predict(:'project', :patient) AS by_project, pgml.predict(:linear_id, :patient) AS by_id
          FROM pgml.diabetes) AS answers;

-- Every regressor PostgresML's example trains, one statement each, with the
-- hyperparameters that keep the slow ones quick; two of them name a runtime, which
-- PostgresML accepts as 'python' or 'rust'.
CREATE TEMP TABLE sweep (algorithm text PRIMARY KEY, hyperparams jsonb, runtime text);
INSERT INTO sweep (algorithm, hyperparams) VALUES
    ('ridge', NULL), ('lasso', NULL), ('elastic_net', NULL), ('least_angle', NULL), ('lasso_least_angle', NULL),
    ('orthogonal_matching_pursuit', NULL), ('bayesian_ridge', NULL), ('automatic_relevance_determination', NULL),
    ('stochastic_gradient_descent', NULL), ('passive_aggressive', NULL), ('ransac', NULL),
    ('theil_sen', '{"max_iter": 10, "max_subpopulation": 100}'), ('huber', NULL),
    ('svm', '{"max_iter": 100}'), ('nu_svm', '{"max_iter": 10}'), ('linear_svm', '{"max_iter": 100}'),
    ('ada_boost', '{"n_estimators": 5}'), ('bagging', '{"n_estimators": 5}'), ('extra_trees', '{"n_estimators": 5}'),
    ('gradient_boosting_trees', '{"n_estimators": 5}'), ('random_forest', '{"n_estimators": 5}'),
    ('xgboost', '{"n_estimators": 10}'), ('catboost', '{"n_estimators": 10}');
UPDATE sweep s SET runtime = r.runtime FROM (VALUES ('ridge', 'python'), ('xgboost', 'rust')) AS r(algorithm, runtime)
 WHERE s.algorithm = r.algorithm;
SELECT format('SELECT * FROM pgml.train(%L, algorithm => %L%s%s)', :'project', algorithm,
              CASE WHEN runtime IS NOT NULL THEN format(', runtime => %L', runtime) END,
              CASE WHEN hyperparams IS NOT NULL THEN format(', hyperparams => %L', hyperparams) END)
  FROM sweep ORDER BY algorithm \gexec

SELECT pg_temp.expect(count(*) = (SELECT count(*) FROM sweep), 'a model per regressor with r2 and mean_squared_error')
  FROM sweep s
 WHERE EXISTS (SELECT FROM pgml.models m JOIN pgml.projects p ON p.id = m.project_id
                WHERE p.name = :'project' AND m.algorithm = s.algorithm AND m.task = 'regression'
                  AND m.metrics ?& '{r2,mean_squared_error}' AND m.hyperparams @> coalesce(s.hyperparams, '{}'));

-- pgml.models.runtime says how pgmodels serves each model, whatever runtime was named.
SELECT pg_temp.expect(bool_and(runtime IN ('onnx', 'xgboost-ubj', 'skops')), 'runtime is how pgmodels serves each model')
  FROM pgml.models;

-- pgml.models begins with PostgresML's columns; deployed_models has exactly PostgresML's.
SELECT pg_temp.expect((array_agg(column_name::text ORDER BY ordinal_position))[1:14]
                      = ARRAY['id', 'project_id', 'snapshot_id', 'num_features', 'algorithm', 'runtime', 'hyperparams',
                              'status', 'metrics', 'search', 'search_params', 'search_args', 'created_at', 'updated_at'],
                      'pgml.models starts with PostgresML''s columns')
  FROM information_schema.columns WHERE table_schema = 'pgml' AND table_name = 'models';
SELECT pg_temp.expect(array_agg(column_name::text ORDER BY ordinal_position) = '{id,name,task,algorithm,runtime,deployed_at}',
                      'pgml.deployed_models has PostgresML''s columns')
  FROM information_schema.columns WHERE table_schema = 'pgml' AND table_name = 'deployed_models';
SELECT pg_temp.expect(bool_and(num_features = 10), 'every model takes the ten features') FROM pgml.models;

-- the five worst by mean squared error, as the example lists them
SELECT t.id, t.algorithm, m.metrics ->> 'mean_squared_error' AS mse
  FROM pgml.trained_models t JOIN pgml.models m ON m.id = t.id
 ORDER BY (m.metrics ->> 'mean_squared_error')::float DESC LIMIT 5;

SELECT * FROM pgml.deploy(:'project', 'most_recent', 'random_forest');
SELECT pg_temp.expect((SELECT algorithm FROM pgml.deployed_models WHERE name = :'project') = 'random_forest',
                      'most_recent random_forest is served');

-- A grid search over xgboost's depth and size with a fixed eval_metric.
SELECT pgml.train(:'project', algorithm => 'xgboost', hyperparams => '{"eval_metric": "rmse"}'::jsonb,
                  search => 'grid', search_params => '{"max_depth": [1, 2], "n_estimators": [20, 40]}');
SELECT pg_temp.expect(bool_and(hyperparams @> '{"eval_metric": "rmse"}' AND (hyperparams ->> 'max_depth')::int IN (1, 2)
                               AND (hyperparams ->> 'n_estimators')::int IN (20, 40)), 'the grid''s model has its values')
  FROM pgml.models WHERE id = (SELECT max(id) FROM pgml.models);

-- Strategies: best_score is the highest r2; most_recent the search's model; a rollback
-- leaves it; the best svm is served last.
SELECT * FROM pgml.deploy(:'project', 'best_score');
SELECT pg_temp.expect(bool_and((m.metrics ->> 'r2')::float = (SELECT max((metrics ->> 'r2')::float) FROM pgml.models)),
                      'best_score serves the highest r2')
  FROM pgml.deployed_models d JOIN pgml.models m ON m.id = d.id WHERE d.name = :'project';
SELECT * FROM pgml.deploy(:'project', 'most_recent');
SELECT pg_temp.expect((SELECT id FROM pgml.deployed_models WHERE name = :'project') = (SELECT max(id) FROM pgml.models),
                      'most_recent serves the search''s model');
SELECT * FROM pgml.deploy(:'project', 'rollback');
SELECT pg_temp.expect((SELECT id FROM pgml.deployed_models WHERE name = :'project') <> (SELECT max(id) FROM pgml.models),
                      'rollback leaves it');
SELECT * FROM pgml.deploy(:'project', 'best_score', 'svm');
SELECT pg_temp.expect((SELECT algorithm FROM pgml.deployed_models WHERE name = :'project') = 'svm', 'the best svm is served');

-- predict_batch over the aggregated rows answers as predict, row for row.
WITH batch AS (
    SELECT pgml.predict_batch(:'project', array_agg(:patient ORDER BY ctid)) AS prediction,
           unnest(array_agg(ctid ORDER BY ctid)) AS row_id
      FROM pgml.diabetes)
SELECT pg_temp.expect(count(*) = 442 AND bool_and(abs(b.prediction - pgml.predict(:'project', ARRAY[d.age, d.sex, d.bmi,
                      d.bp, d.s1, d.s2, d.s3, d.s4, d.s5, d.s6])) < 1e-3), 'predict_batch answers as predict')
  FROM batch b JOIN pgml.diabetes d ON d.ctid = b.row_id;

SELECT target, pgml.predict(:'project', :patient) AS prediction FROM pgml.diabetes LIMIT 10;
