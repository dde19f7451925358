-- pgml compatibility, clustering: the 8x8 digit images without their labels. A
-- clustering project trained on a view of the images alone (no y_column_name), first
-- with the default algorithm (k-means, as PostgresML), then with each clustering
-- algorithm PostgresML offers online; cluster numbers from predict by project and by
-- model id, and from predict_batch over array_agg(image).
--
-- Run by tests/test_pgml_compat.py, or by hand on a database with pgmodels_pgml:
--     psql -X -f tests/pgml_compat/clustering.sql "$DATABASE_URL"
\ir expect.psql
\set project 'Digit Groups'

SELECT * FROM pgml.load_dataset('digits') \gset loaded_
SELECT pg_temp.expect(:'loaded_table_name' = 'pgml.digits' AND :loaded_rows = 1797, 'load_dataset made pgml.digits');
SELECT pg_temp.expect(bool_and(array_dims(image) = '[1:8][1:8]'), 'each image is an 8x8 array') FROM pgml.digits;

-- Unsupervised: the training relation has the images only.
CREATE VIEW unlabelled_digits AS SELECT image FROM pgml.digits;

SELECT * FROM pgml.train(:'project', 'clustering', 'unlabelled_digits', hyperparams => '{"n_clusters": 10}') \gset first_
SELECT pg_temp.expect(:'first_task' = 'clustering' AND :'first_algorithm' = 'kmeans' AND :'first_deployed',
                      'the default clustering algorithm is k-means, deployed');
SELECT pg_temp.expect(bool_and(y_column_name IS NULL AND relation_name LIKE '%unlabelled_digits'),
                      'the snapshot has no target') FROM pgml.snapshots;

-- predict gives a cluster number, 0 to 9, and uses all ten; predict_batch of all the
-- images aggregated (an array of 8x8 arrays) gives the same numbers, row for row.
WITH batch AS (
    SELECT pgml.predict_batch(:'project', array_agg(image ORDER BY ctid)) AS c, unnest(array_agg(ctid ORDER BY ctid)) AS row_id
      FROM pgml.digits)
SELECT pg_temp.expect(count(*) = 1797 AND min(b.c) = 0 AND max(b.c) = 9 AND count(DISTINCT b.c) = 10
                      AND bool_and(b.c = trunc(b.c) AND b.c = pgml.predict(:'project', d.image)),
                      'ten clusters, numbered 0 to 9, by predict and predict_batch alike')
  FROM batch b JOIN pgml.digits d ON d.ctid = b.row_id;

-- The online clustering algorithms PostgresML documents, one statement each.
CREATE TEMP TABLE sweep (algorithm text PRIMARY KEY, hyperparams jsonb);
INSERT INTO sweep VALUES
    ('mini_batch_kmeans', '{"n_clusters": 10}'), ('kmeans', '{"n_clusters": 10}'),
    ('birch', '{"n_clusters": 10}'), ('affinity_propagation', NULL);
SELECT format('SELECT * FROM pgml.train(%L, algorithm => %L%s)', :'project', algorithm,
              CASE WHEN hyperparams IS NOT NULL THEN format(', hyperparams => %L', hyperparams) END)
  FROM sweep ORDER BY algorithm \gexec

SELECT pg_temp.expect(count(*) = (SELECT count(*) FROM sweep), 'a clustering model per algorithm, with a silhouette')
  FROM sweep s
 WHERE EXISTS (SELECT FROM pgml.models m WHERE m.algorithm = s.algorithm AND m.task = 'clustering'
                  AND m.metrics ? 'silhouette' AND m.hyperparams @> coalesce(s.hyperparams, '{}'));

-- Each model answers by id with whole cluster numbers; a model asked for ten clusters
-- uses no more than ten.
SELECT pg_temp.expect(bool_and(c = trunc(c) AND c >= 0) AND bool_and(c < 10) FILTER (WHERE m.hyperparams ? 'n_clusters'),
                      'every model predicts by id')
  FROM pgml.models m, LATERAL (SELECT pgml.predict(m.id, image) AS c FROM pgml.digits LIMIT 50) AS answers;

-- the clusters of a few digits
SELECT target, pgml.predict(:'project', image) AS cluster FROM pgml.digits LIMIT 10;
