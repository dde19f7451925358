-- pgml compatibility, image classification: the digits again, now labelled, with the
-- whole 8x8 image as one array feature. The classifiers PostgresML's example trains on
-- images, a grid search kept out of deployment (automatic_deploy => false), the
-- strategies, and predict_batch in the form PostgresML's documentation shows:
-- array_agg(image) with the labels passed through by unnest(array_agg(target)).
--
-- Run by tests/test_pgml_compat.py, or by hand on a database with pgmodels_pgml:
--     psql -X -f tests/pgml_compat/image_classification.sql "$DATABASE_URL"
\ir expect.psql
\set project 'Digit Recognition'

SELECT * FROM pgml.load_dataset('digits') \gset loaded_
SELECT pg_temp.expect(:'loaded_table_name' = 'pgml.digits' AND :loaded_rows = 1797, 'load_dataset made pgml.digits');

SELECT * FROM pgml.train(:'project', 'classification', 'pgml.digits', 'target') \gset first_
SELECT pg_temp.expect(:'first_algorithm' = 'linear' AND :'first_deployed', 'a linear digit classifier, deployed');
SELECT pg_temp.expect(bool_and(num_features = 64), 'an 8x8 image is 64 features') FROM pgml.models;

-- Ten probabilities per image, the likeliest digit being predict's answer.
SELECT pg_temp.expect(bool_and(cardinality(proba) = 10 AND abs((SELECT sum(p) FROM unnest(proba) p) - 1) < 1e-3
                               AND array_position(proba, (SELECT max(p) FROM unnest(proba) p)) - 1 = digit),
                      'predict_proba has ten classes and agrees with predict')
  FROM (SELECT pgml.predict(:'project', image) AS digit, pgml.predict_proba(:'project', image) AS proba
          FROM pgml.digits LIMIT 300) AS answers;

CREATE TEMP TABLE sweep (algorithm text PRIMARY KEY, hyperparams jsonb);
INSERT INTO sweep VALUES
    ('xgboost', '{"n_estimators": 10}'), ('random_forest', '{"n_estimators": 10}'),
    ('gradient_boosting_trees', '{"n_estimators": 10}'), ('extra_trees', '{"n_estimators": 10}'), ('bagging', NULL),
    ('linear_svm', NULL), ('nu_svm', NULL), ('svm', NULL),
    ('passive_aggressive', NULL), ('perceptron', NULL), ('stochastic_gradient_descent', NULL), ('ridge', NULL);
SELECT format('SELECT * FROM pgml.train(%L, algorithm => %L%s)', :'project', algorithm,
              CASE WHEN hyperparams IS NOT NULL THEN format(', hyperparams => %L', hyperparams) END)
  FROM sweep ORDER BY algorithm \gexec

SELECT pg_temp.expect(count(*) = (SELECT count(*) FROM sweep), 'a scored model per classifier, with its hyperparams')
  FROM sweep s
 WHERE EXISTS (SELECT FROM pgml.models m WHERE m.algorithm = s.algorithm AND m.metrics ? 'f1'
                  AND m.hyperparams @> coalesce(s.hyperparams, '{}'));

-- the five best by f1
SELECT t.id, t.algorithm, t.deployed, m.metrics ->> 'f1' AS f1
  FROM pgml.trained_models t JOIN pgml.models m ON m.id = t.id
 ORDER BY m.metrics ->> 'f1' DESC LIMIT 5;

SELECT * FROM pgml.deploy(:'project', 'most_recent', 'random_forest');
SELECT pg_temp.expect((SELECT algorithm FROM pgml.deployed_models WHERE name = :'project') = 'random_forest',
                      'most_recent random_forest is served');

-- A grid search of the svm's kernel and shrinking (six candidates), not deployed
-- whatever it scores.
SELECT * FROM pgml.train(:'project', algorithm => 'svm', hyperparams => '{"random_state": 0}', search => 'grid',
                         search_params => '{"kernel": ["linear", "poly", "sigmoid"], "shrinking": [true, false]}',
                         automatic_deploy => false) \gset searched_
SELECT pg_temp.expect(:'searched_algorithm' = 'svm' AND NOT :'searched_deployed'
                      AND (SELECT algorithm FROM pgml.deployed_models WHERE name = :'project') = 'random_forest',
                      'automatic_deploy => false leaves the random forest deployed');
SELECT pg_temp.expect(bool_and(hyperparams ->> 'kernel' IN ('linear', 'poly', 'sigmoid') AND hyperparams ? 'shrinking'),
                      'the searched svm has a candidate''s kernel')
  FROM pgml.models WHERE id = (SELECT max(id) FROM pgml.models);

SELECT * FROM pgml.deploy(:'project', 'best_score');
SELECT pg_temp.expect(bool_and((m.metrics ->> 'f1')::float = (SELECT max((metrics ->> 'f1')::float) FROM pgml.models)),
                      'best_score serves the highest f1')
  FROM pgml.deployed_models d JOIN pgml.models m ON m.id = d.id WHERE d.name = :'project';
SELECT * FROM pgml.deploy(:'project', 'most_recent');
SELECT pg_temp.expect((SELECT id FROM pgml.deployed_models WHERE name = :'project') = (SELECT max(id) FROM pgml.models),
                      'most_recent serves the searched svm');
SELECT * FROM pgml.deploy(:'project', 'rollback');
SELECT * FROM pgml.deploy(:'project', 'best_score', 'svm') \gset last_
SELECT pg_temp.expect(:'last_algorithm' = 'svm', 'best_score among svm models');

-- PostgresML's batch form, restricted in the aggregate's WHERE: the zeros are read as zeros.
WITH predictions AS (
    SELECT pgml.predict_batch(:'project', array_agg(image)) AS prediction, unnest(array_agg(target)) AS target
      FROM pgml.digits
     WHERE target = 0)
SELECT pg_temp.expect(count(*) = (SELECT count(*) FROM pgml.digits WHERE target = 0)
                      AND avg((prediction = target)::int) > 0.9, 'predict_batch reads the zeros')
  FROM predictions;

SELECT target, pgml.predict(:'project', image) AS prediction FROM pgml.digits LIMIT 10;
