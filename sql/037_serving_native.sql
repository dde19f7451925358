-- The one-row predict of a tree ensemble, in C (extension/src/native.c, the library
-- pgmodels_native). predict()'s array wrappers (sql/040_serving.sql) call it first: it
-- answers only from a registration the Python decision cache made in this backend for
-- the role the statement runs as, at the backend's current invalidation count, and
-- returns NULL otherwise, when the wrapper goes on to the Python cores as before. So it
-- decides nothing about privileges: see python_udfs/pgmodels/serving/native.py.
CREATE OR REPLACE FUNCTION pgmodels._predict_native(project_name text, model_id bigint, features anyarray)
RETURNS real
LANGUAGE c STABLE PARALLEL SAFE
AS '$libdir/pgmodels_native', 'pgmodels_predict_native';
COMMENT ON FUNCTION pgmodels._predict_native(text, bigint, anyarray) IS 'internal: predict() for one row of a tree ensemble the backend''s decision cache registered for the calling role, in C; NULL when there is none (the Python cores answer)';

-- predict_batch()'s answers from the same registration, one per row (NULL: ask the cores).
CREATE OR REPLACE FUNCTION pgmodels._predict_batch_native(project_name text, model_id bigint, features real[])
RETURNS real[]
LANGUAGE c STABLE PARALLEL SAFE
AS '$libdir/pgmodels_native', 'pgmodels_predict_batch_native';
COMMENT ON FUNCTION pgmodels._predict_batch_native(text, bigint, real[]) IS 'internal: predict_batch() for the rows of a tree ensemble the backend''s decision cache registered for the calling role, in C; NULL when there is none (the Python cores answer)';
