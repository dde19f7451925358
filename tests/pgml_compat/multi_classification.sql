-- pgml compatibility, multi-class classification: iris (three species, integer labels),
-- trained on a view that holds a fifth of the flowers back, with pgml.train's named
-- form; predict, predict_proba and the documented predict_batch over array_agg; the
-- classifiers PostgresML names for this data; a grid and a random search; the strategies.
--
-- Run by tests/test_pgml_compat.py, or by hand on a database with pgmodels_pgml:
--     psql -X -f tests/pgml_compat/multi_classification.sql "$DATABASE_URL"
\ir expect.psql
\set project 'Iris Species'
\set flower 'ARRAY[sepal_length, sepal_width, petal_length, petal_width]'

SELECT * FROM pgml.load_dataset('iris') \gset loaded_
SELECT pg_temp.expect(:'loaded_table_name' = 'pgml.iris' AND :loaded_rows = 150, 'load_dataset made pgml.iris');

-- Flowers numbered in a fixed order; every fifth is held back from training. The
-- training view is found on the search_path, as PostgresML resolves relation_name.
CREATE VIEW numbered_iris AS
SELECT row_number() OVER (ORDER BY sepal_length, sepal_width, petal_length, petal_width, target) AS n, i.*
  FROM pgml.iris i;
CREATE VIEW iris_training AS
SELECT sepal_length, sepal_width, petal_length, petal_width, target FROM numbered_iris WHERE n % 5 <> 0;

SELECT * FROM pgml.train(project_name => :'project', task => 'classification', relation_name => 'iris_training',
                         y_column_name => 'target', test_size => 0.2, test_sampling => 'stratified') \gset first_
SELECT pg_temp.expect(:'first_task' = 'classification' AND :'first_algorithm' = 'linear' AND :'first_deployed',
                      'named train made and deployed a linear model');
-- (the relation as pgmodels resolved it: public.iris_training)
SELECT pg_temp.expect(bool_and(relation_name LIKE '%iris_training' AND y_column_name = '{target}' AND test_size = 0.2::real
                               AND test_sampling = 'stratified' AND rows = 120), 'the snapshot records relation, target and split')
  FROM pgml.snapshots WHERE id = (SELECT max(id) FROM pgml.models);

-- predict_proba: three probabilities per flower, in label order, the likeliest being
-- predict's answer; the held-back flowers are mostly right.
SELECT pg_temp.expect(bool_and(cardinality(proba) = 3 AND abs(proba[1] + proba[2] + proba[3] - 1) < 1e-4
                               AND array_position(proba, greatest(proba[1], proba[2], proba[3])) - 1 = label),
                      'predict_proba has three classes and agrees with predict')
  FROM (SELECT pgml.predict(:'project', :flower) AS label, pgml.predict_proba(:'project', :flower) AS proba
          FROM pgml.iris) AS answers;
SELECT pg_temp.expect(avg((pgml.predict(:'project', :flower) = target)::int) > 0.8, 'held-back flowers mostly right')
  FROM numbered_iris WHERE n % 5 = 0;

-- predict_batch as PostgresML documents it: the features aggregated with array_agg, one
-- prediction per row back as a set, a key passed through with unnest(array_agg(...)).
WITH batch AS (
    SELECT pgml.predict_batch(:'project', array_agg(:flower ORDER BY n)) AS prediction,
           unnest(array_agg(n ORDER BY n)) AS n
      FROM numbered_iris)
SELECT pg_temp.expect(count(*) = 150 AND bool_and(b.prediction = pgml.predict(:'project', ARRAY[i.sepal_length,
                      i.sepal_width, i.petal_length, i.petal_width])), 'predict_batch answers as predict, row for row')
  FROM batch b JOIN numbered_iris i USING (n);

-- The classifiers PostgresML's example trains on iris, one statement each (its random
-- forest comes below, from a random search).
CREATE TEMP TABLE sweep (algorithm text PRIMARY KEY, hyperparams jsonb);
INSERT INTO sweep VALUES
    ('catboost', '{"n_estimators": 10}'), ('xgboost', '{"n_estimators": 10}'),
    ('gradient_boosting_trees', '{"n_estimators": 10}'), ('extra_trees', '{"n_estimators": 10}'),
    ('bagging', NULL), ('ada_boost', NULL),
    ('linear_svm', NULL), ('nu_svm', NULL), ('svm', NULL), ('ridge', NULL);
SELECT format('SELECT * FROM pgml.train(%L, algorithm => %L%s)', :'project', algorithm,
              CASE WHEN hyperparams IS NOT NULL THEN format(', hyperparams => %L', hyperparams) END)
  FROM sweep ORDER BY algorithm \gexec

SELECT pg_temp.expect(count(*) = (SELECT count(*) FROM sweep), 'a scored model per algorithm, with its hyperparams')
  FROM sweep s
 WHERE EXISTS (SELECT FROM pgml.models m JOIN pgml.projects p ON p.id = m.project_id
                WHERE p.name = :'project' AND m.algorithm = s.algorithm AND m.task = 'classification'
                  AND m.metrics ? 'f1' AND m.hyperparams @> coalesce(s.hyperparams, '{}'));
-- every model was trained on the first call's data and split
SELECT pg_temp.expect(count(DISTINCT (relation_name, test_size, test_sampling)) = 1, 'one snapshot definition for all')
  FROM pgml.snapshots;

-- Searches: a random search of two candidates (search_args n_iter), and a grid over
-- three hyperparameters (eight candidates) with one fixed.
SELECT * FROM pgml.train(:'project', algorithm => 'random_forest', search => 'random', search_args => '{"n_iter": 2}',
                         search_params => '{"n_estimators": [5, 10], "max_depth": [2, 3, 4]}');
SELECT pg_temp.expect(bool_and(algorithm = 'random_forest' AND (hyperparams ->> 'max_depth')::int IN (2, 3, 4)),
                      'the random search''s model has a candidate''s values')
  FROM pgml.models WHERE id = (SELECT max(id) FROM pgml.models);
SELECT * FROM pgml.deploy(:'project', 'most_recent', 'random_forest');
SELECT pg_temp.expect(bool_and(algorithm = 'random_forest'), 'most_recent random_forest is served')
  FROM pgml.deployed_models WHERE name = :'project';
SELECT * FROM pgml.train(:'project', algorithm => 'gradient_boosting_trees', hyperparams => '{"random_state": 0}',
                         search => 'grid', search_params => '{"n_estimators": [10, 20], "max_leaf_nodes": [2, 4],
                                                              "criterion": ["friedman_mse", "squared_error"]}');
SELECT pg_temp.expect(bool_and(hyperparams @> '{"random_state": 0}' AND hyperparams ->> 'criterion' IN ('friedman_mse', 'squared_error')
                               AND (hyperparams ->> 'max_leaf_nodes')::int IN (2, 4)), 'the grid''s model has its fixed and searched values')
  FROM pgml.models WHERE id = (SELECT max(id) FROM pgml.models);

-- Strategies; the last leaves the best svm deployed.
SELECT * FROM pgml.deploy(:'project', 'best_score') \gset best_
SELECT pg_temp.expect(:'best_strategy' = 'best_score'
                      AND bool_and((m.metrics ->> 'f1')::float = (SELECT max((metrics ->> 'f1')::float) FROM pgml.models)),
                      'best_score serves the highest f1')
  FROM pgml.deployed_models d JOIN pgml.models m ON m.id = d.id WHERE d.name = :'project';
SELECT * FROM pgml.deploy(:'project', 'most_recent');
SELECT pg_temp.expect(bool_and(id = (SELECT max(id) FROM pgml.models)), 'most_recent serves the grid''s model')
  FROM pgml.deployed_models WHERE name = :'project';
SELECT * FROM pgml.deploy(:'project', 'rollback') \gset rolled_
SELECT pg_temp.expect(:'rolled_strategy' = 'rollback' AND bool_and(id <> (SELECT max(id) FROM pgml.models)),
                      'rollback leaves the newest model')
  FROM pgml.deployed_models WHERE name = :'project';
SELECT * FROM pgml.deploy(:'project', 'best_score', 'svm') \gset svm_
SELECT pg_temp.expect(:'svm_algorithm' = 'svm', 'best_score among svm models');

-- the species of a few held-back flowers beside the svm's answer
SELECT target, pgml.predict(:'project', :flower) AS prediction FROM numbered_iris WHERE n % 5 = 0 ORDER BY n LIMIT 10;
