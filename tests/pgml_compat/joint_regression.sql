-- pgml compatibility, joint regression: linnerud (three exercises predict three body
-- measurements, 20 rows). pgml.train_joint in the named form PostgresML's joint
-- optimization guide uses, then by algorithm name alone; predict_joint by project and by
-- model id; predict_batch's flattened answer, one value per target of each row.
--
-- Run by tests/test_pgml_compat.py, or by hand on a database with pgmodels_pgml:
--     psql -X -f tests/pgml_compat/joint_regression.sql "$DATABASE_URL"
\ir expect.psql
\set project 'Exercise and Body'
\set exercises 'ARRAY[chins, situps, jumps]'

SELECT * FROM pgml.load_dataset('linnerud') \gset loaded_
SELECT pg_temp.expect(:'loaded_table_name' = 'pgml.linnerud' AND :loaded_rows = 20, 'load_dataset made pgml.linnerud');

SELECT * FROM pgml.train_joint(:'project', task => 'regression', relation_name => 'pgml.linnerud',
                               y_column_name => ARRAY['weight', 'waist', 'pulse']) \gset first_
SELECT pg_temp.expect(:'first_project' = :'project' AND :'first_task' = 'regression' AND :'first_algorithm' = 'linear'
                      AND :'first_deployed', 'train_joint returned (project, regression, linear, deployed)');
SELECT max(id) AS first_id FROM pgml.models \gset

-- predict_joint: one real per target, in the order the targets were named; by id the same.
SELECT pg_temp.expect(bool_and(cardinality(joint) = 3 AND joint = pgml.predict_joint(:first_id, :exercises)),
                      'predict_joint gives weight, waist and pulse, by name and by id')
  FROM (SELECT l.*, pgml.predict_joint(:'project', :exercises) AS joint FROM pgml.linnerud l) AS answers;

-- Each regressor PostgresML's joint example trains, by name only: the project's targets
-- and split are reused.
CREATE TEMP TABLE sweep (algorithm text PRIMARY KEY, hyperparams jsonb);
INSERT INTO sweep VALUES
    ('random_forest', '{"n_estimators": 5}'), ('gradient_boosting_trees', '{"n_estimators": 5}'),
    ('extra_trees', '{"n_estimators": 5}'), ('bagging', '{"n_estimators": 5}'), ('ada_boost', '{"n_estimators": 5}'),
    ('linear_svm', '{"max_iter": 100}'), ('nu_svm', '{"max_iter": 10}'), ('svm', '{"max_iter": 100}'),
    ('huber', NULL), ('theil_sen', '{"max_iter": 10, "max_subpopulation": 100}'), ('ransac', NULL),
    ('passive_aggressive', NULL), ('stochastic_gradient_descent', NULL), ('automatic_relevance_determination', NULL),
    ('bayesian_ridge', NULL), ('orthogonal_matching_pursuit', NULL), ('lasso_least_angle', NULL),
    ('least_angle', NULL), ('elastic_net', NULL), ('lasso', NULL), ('ridge', NULL);
SELECT format('SELECT * FROM pgml.train_joint(%L, algorithm => %L%s)', :'project', algorithm,
              CASE WHEN hyperparams IS NOT NULL THEN format(', hyperparams => %L', hyperparams) END)
  FROM sweep ORDER BY algorithm \gexec

SELECT pg_temp.expect(count(*) = (SELECT count(*) FROM sweep), 'a model per regressor, scored by mean squared error')
  FROM sweep s
 WHERE EXISTS (SELECT FROM pgml.models m WHERE m.algorithm = s.algorithm AND m.task = 'regression'
                  AND m.metrics ? 'mean_squared_error' AND m.hyperparams @> coalesce(s.hyperparams, '{}'));
SELECT pg_temp.expect(count(*) = 1 + (SELECT count(*) FROM sweep) AND bool_and(y_column_name = '{weight,waist,pulse}'
                      AND relation_name = 'pgml.linnerud'), 'every snapshot has the three targets')
  FROM pgml.snapshots;

-- the five worst by mean squared error
SELECT t.id, t.algorithm, m.metrics ->> 'mean_squared_error' AS mse
  FROM pgml.trained_models t JOIN pgml.models m ON m.id = t.id
 ORDER BY (m.metrics ->> 'mean_squared_error')::float DESC LIMIT 5;

SELECT * FROM pgml.deploy(:'project', 'most_recent', 'random_forest');
SELECT pg_temp.expect((SELECT algorithm FROM pgml.deployed_models WHERE name = :'project') = 'random_forest',
                      'most_recent random_forest is served');

-- The strategies; the svm is served last.
SELECT * FROM pgml.deploy(:'project', 'best_score');
SELECT * FROM pgml.deploy(:'project', 'most_recent');
SELECT pg_temp.expect((SELECT id FROM pgml.deployed_models WHERE name = :'project') = (SELECT max(id) FROM pgml.models),
                      'most_recent serves the newest model');
SELECT * FROM pgml.deploy(:'project', 'rollback');
SELECT * FROM pgml.deploy(:'project', 'best_score', 'svm') \gset last_
SELECT pg_temp.expect(:'last_algorithm' = 'svm' AND (SELECT algorithm FROM pgml.deployed_models WHERE name = :'project') = 'svm',
                      'the svm is served');

-- predict_batch of the rows' features, given row after row in one flat array: PostgresML's
-- flattened answer, three values per row (weight, waist, pulse of the first row, then of
-- the second, ...). (Here the flat form: for a joint model, pgmodels' pgml.predict_batch
-- does not yet take the two-dimensional array that array_agg(ARRAY[...]) makes.)
WITH numbered AS (SELECT row_number() OVER (ORDER BY chins, situps, jumps, weight) AS n, l.* FROM pgml.linnerud l),
     batch AS (SELECT array_agg(v ORDER BY k) AS flat
                 FROM pgml.predict_batch(:'project', (SELECT array_agg(f.x ORDER BY n, f.i)
                                                        FROM numbered, unnest(:exercises) WITH ORDINALITY AS f(x, i)))
                      WITH ORDINALITY AS t(v, k)),
     joint AS (SELECT array_agg(x ORDER BY n, k) AS flat
                 FROM numbered, unnest(pgml.predict_joint(:'project', :exercises)) WITH ORDINALITY AS t(x, k))
SELECT pg_temp.expect(cardinality(b.flat) = 60 AND b.flat = j.flat, 'predict_batch flattens predict_joint row by row')
  FROM batch b, joint j;

SELECT weight, waist, pulse, pgml.predict_joint(:'project', :exercises) AS prediction FROM pgml.linnerud LIMIT 10;
