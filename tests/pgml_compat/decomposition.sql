-- pgml compatibility, decomposition: principal components of the 8x8 digit images. A
-- decomposition project on a view of the images (the default algorithm is PCA, as in
-- PostgresML), retrained with n_components alone; pgml.decompose and pgml.predict (the
-- first component) by project and by model id; the strategies, scored by
-- cumulative_explained_variance; predict_batch's components, row after row.
--
-- Run by tests/test_pgml_compat.py, or by hand on a database with pgmodels_pgml:
--     psql -X -f tests/pgml_compat/decomposition.sql "$DATABASE_URL"
\ir expect.psql
\set project 'Digit Components'

SELECT * FROM pgml.load_dataset('digits') \gset loaded_
SELECT pg_temp.expect(:'loaded_table_name' = 'pgml.digits' AND :loaded_rows = 1797, 'load_dataset made pgml.digits');
CREATE VIEW digit_pixels AS SELECT image FROM pgml.digits;

-- All 64 components first (no hyperparams), then three: the second call names neither
-- relation nor algorithm, so the project's data and PCA are used again.
SELECT * FROM pgml.train(:'project', 'decomposition', 'digit_pixels') \gset full_
SELECT pg_temp.expect(:'full_task' = 'decomposition' AND :'full_algorithm' = 'pca' AND :'full_deployed',
                      'the default decomposition algorithm is PCA, deployed');
SELECT max(id) AS full_id FROM pgml.models \gset
SELECT pg_temp.expect(bool_and(cardinality(pgml.decompose(:'project', image)) = 64), 'decompose gives 64 components')
  FROM pgml.digits WHERE target = 7;

SELECT * FROM pgml.train(:'project', hyperparams => '{"n_components": 3}') \gset three_
SELECT pg_temp.expect(:'three_algorithm' = 'pca', 'the retrain is PCA again');
SELECT max(id) AS three_id FROM pgml.models \gset

SELECT pg_temp.expect((SELECT (metrics ->> 'cumulative_explained_variance')::float FROM pgml.models WHERE id = :full_id) > 0.999
                      AND (SELECT (metrics ->> 'cumulative_explained_variance')::float FROM pgml.models WHERE id = :three_id) < 0.5,
                      'all components explain all the variance, three explain less than half');

-- By id each model gives its own number of components; predict is the first of them.
SELECT pg_temp.expect(bool_and(cardinality(three) = 3 AND cardinality(all_64) = 64 AND abs(first - three[1]) < 1e-4),
                      'decompose and predict by model id')
  FROM (SELECT pgml.decompose(:three_id, image) AS three, pgml.decompose(:full_id, image) AS all_64,
               pgml.predict(:three_id, image) AS first
          FROM pgml.digits LIMIT 300) AS components;

-- the models by explained variance, as PostgresML's users list them
SELECT t.id, t.algorithm, m.hyperparams ->> 'n_components' AS n_components,
       m.metrics ->> 'cumulative_explained_variance' AS explained
  FROM pgml.trained_models t JOIN pgml.models m ON m.id = t.id
 ORDER BY m.metrics ->> 'cumulative_explained_variance' DESC LIMIT 5;

-- Strategies, restricted to the algorithm or not. The three-component model is the most
-- recent; best_score is the one that explains the most.
SELECT * FROM pgml.deploy(:'project', 'most_recent', 'pca');
SELECT pg_temp.expect((SELECT id FROM pgml.deployed_models WHERE name = :'project') = :three_id, 'most_recent pca');
SELECT * FROM pgml.deploy(:'project', 'best_score');
SELECT pg_temp.expect((SELECT id FROM pgml.deployed_models WHERE name = :'project') = :full_id, 'best_score: all components');
SELECT * FROM pgml.deploy(:'project', 'most_recent');
SELECT * FROM pgml.deploy(:'project', 'rollback') \gset rolled_
SELECT pg_temp.expect(:'rolled_algorithm' = 'pca' AND (SELECT id FROM pgml.deployed_models WHERE name = :'project') = :full_id,
                      'rollback goes back to all components');

-- predict_batch of a flat array of pixels, image after image: every component of the
-- first image, then of the second, ... (the three-component model, deployed by id;
-- here the flat form: for a PCA model, pgmodels' pgml.predict_batch does not yet take
-- the multi-dimensional array that array_agg(image) makes).
SELECT * FROM pgml.deploy(:three_id) \gset by_id_
SELECT pg_temp.expect(:'by_id_strategy' = 'specific', 'deploy by id');
WITH first_images AS (SELECT row_number() OVER (ORDER BY ctid) AS n, image FROM pgml.digits ORDER BY ctid LIMIT 50),
     batch AS (SELECT array_agg(v ORDER BY k) AS flat
                 FROM pgml.predict_batch(:'project', (SELECT array_agg(p.x ORDER BY s.n, p.i)
                                                        FROM first_images s, unnest(s.image) WITH ORDINALITY AS p(x, i))::real[])
                      WITH ORDINALITY AS t(v, k)),
     one_by_one AS (SELECT array_agg(c.x ORDER BY s.n, c.i) AS flat
                      FROM first_images s, unnest(pgml.decompose(:'project', s.image)) WITH ORDINALITY AS c(x, i))
SELECT pg_temp.expect(cardinality(b.flat) = 150 AND b.flat = o.flat, 'predict_batch gives each image''s three components')
  FROM batch b, one_by_one o;

-- Last, the best PCA model serves again.
SELECT * FROM pgml.deploy(:'project', 'best_score', 'pca');
SELECT pg_temp.expect((SELECT id FROM pgml.deployed_models WHERE name = :'project') = :full_id, 'best_score pca');

SELECT target, pgml.predict(:'project', image) AS first_component FROM pgml.digits LIMIT 10;
