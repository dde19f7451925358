-- Scoring a block of rows in one model run: the path batch jobs (and any other mode
-- that scores rows in bulk) share with predict_batch. A caller aggregates its rows in
-- SQL, the numeric features into one rows x features real[] passed as array_send()
-- bytes (Python reads them in place) and the text features into a rows x features
-- text[], and gets the answers back as arrays in the same row order, which it zips
-- with its keys (unnest ... WITH ORDINALITY). Like the other cores it answers only from
-- a model pgmodels._lookup loaded for this statement, so the caller writes
--   pgmodels._score_rows(project, 0, x, t, outputs, pgmodels._stamp(),
--                        pgmodels._lookup(project, 0, pgmodels._credential()))
-- and then PERFORM pgmodels._raise_pending(NULL::integer) (or checks for a NULL result).

CREATE OR REPLACE FUNCTION pgmodels._score_rows(project_name text, model_id bigint, numeric_features bytea,
                                                text_features text[], outputs text[], stamp double precision,
                                                loaded boolean)
RETURNS pgmodels.scored_rows LANGUAGE plpython3u STABLE PARALLEL SAFE
AS $$
if 'pgmodels.active' not in GD: return None  # _lookup activates first: without it no model is loaded to answer
from pgmodels.serving.predict import score_rows; return score_rows(project_name, model_id, numeric_features, text_features, outputs, stamp, loaded)
$$;
COMMENT ON FUNCTION pgmodels._score_rows(text, bigint, bytea, text[], text[], double precision, boolean) IS 'internal: scores a block of rows in one model run (numeric features as array_send of a rows x n real[], text features as a rows x m text[]); answers only from a model _lookup loaded for this statement';

-- The model a project serves, as a caller that may predict with it sees it: what a
-- batch job needs to read the right columns. Definer: the catalog is not readable by
-- PUBLIC; the privilege check is _resolve's.
CREATE OR REPLACE FUNCTION pgmodels._serving_model(project_name text, model_id bigint, credential text)
RETURNS TABLE (model_id bigint, project text, version integer, task text, feature_names text[],
               feature_types text[], nullable text[], array_features jsonb, labels jsonb)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (r).id, (r).project, (r).version, (r).task, (r).feature_names, (r).feature_types, (r).nullable,
           (r).array_features, (r).labels::jsonb
      FROM (SELECT pgmodels._resolve($1, $2, pgmodels._verify_caller($3), 'predict') AS r) s
$$;
COMMENT ON FUNCTION pgmodels._serving_model(text, bigint, text) IS 'internal: the deployed (model_id 0) or given model of a project, without its artifact, for a caller that may predict with it';

-- Raised in a batch chunk's SQL for a row whose array feature has the wrong length.
CREATE OR REPLACE FUNCTION pgmodels._bad_array_feature(feature text, expected integer, got integer) RETURNS real[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF got IS NULL THEN
        RAISE EXCEPTION 'array feature "%" is NULL', feature USING ERRCODE = '22004';
    END IF;
    RAISE EXCEPTION 'array feature "%" must have % elements, got %', feature, expected, got
        USING ERRCODE = '22023', DETAIL = 'The model was trained on arrays of that many elements (multi-dimensional ones read in row-major order).';
END
$$;
COMMENT ON FUNCTION pgmodels._bad_array_feature(text, integer, integer) IS 'internal: the error for an array feature of the wrong length in a block of rows';
