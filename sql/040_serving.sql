-- Serving: predict(), predict_proba(), predict_label(), predict_batch().
--
-- PL/Python cores do the work, one per kind of answer, each taking the features as
-- float8[] (arrays) or jsonb (objects, and rows, which the wrappers turn into jsonb since
-- PL/Python takes no polymorphic arguments). The user-facing functions
-- are one-line SQL wrappers that PostgreSQL inlines into the calling query: they cast
-- the features to what the core takes and pass statement_timestamp(), with which the
-- core checks once per statement which model a project serves (see
-- python_udfs/pgmodels/serving/cache.py). All of them only read, so they are PARALLEL
-- SAFE and work on a read-only hot standby.

-- The lookups run with the extension owner's rights because the catalog tables are not
-- readable by PUBLIC; they return only what predict needs.
CREATE FUNCTION pgmodels._deployment_of(project_name text, OUT project_id bigint, OUT model_id bigint)
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.id, (SELECT d.model_id FROM pgmodels.deployments d
                  WHERE d.project_id = p.id ORDER BY d.id DESC LIMIT 1)
    FROM pgmodels.projects p WHERE p.name = project_name
$$;
COMMENT ON FUNCTION pgmodels._deployment_of(text) IS 'internal: the project''s id and its deployed model id (definer: the catalog is not readable by PUBLIC)';

CREATE FUNCTION pgmodels._model_exists(model_id bigint) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT EXISTS (SELECT 1 FROM pgmodels.models m WHERE m.id = model_id) $$;
COMMENT ON FUNCTION pgmodels._model_exists(bigint) IS 'internal: whether a model id exists (definer: the catalog is not readable by PUBLIC)';

CREATE FUNCTION pgmodels._model_artifact(model_id bigint)
RETURNS TABLE (id bigint, project text, version integer, task text, runtime text, artifact bytea,
               artifact_sha256 bytea, feature_names text[], feature_types text[], labels text, nullable text[])
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.id, p.name, m.version, m.task, m.runtime, m.artifact, m.artifact_sha256,
           m.feature_names, m.feature_types, m.labels::text,
           ARRAY(SELECT jsonb_array_elements_text(m.training -> 'nullable'))
    FROM pgmodels.models m JOIN pgmodels.projects p ON p.id = m.project_id
    WHERE m.id = model_id
$$;
COMMENT ON FUNCTION pgmodels._model_artifact(bigint) IS 'internal: a model''s artifact and what serving needs to run it (definer: the catalog is not readable by PUBLIC)';

CREATE FUNCTION pgmodels._predict(project_name text, model_id bigint, features float8[], stamp timestamptz)
RETURNS real LANGUAGE plpython3u STABLE STRICT PARALLEL SAFE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.serving.predict import predict; return predict(project_name, model_id, features, stamp)
$$;
COMMENT ON FUNCTION pgmodels._predict(text, bigint, float8[], timestamptz) IS 'internal: the core of predict()';

CREATE FUNCTION pgmodels._predict(project_name text, model_id bigint, features jsonb, stamp timestamptz)
RETURNS real LANGUAGE plpython3u STABLE STRICT PARALLEL SAFE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.serving.predict import predict; return predict(project_name, model_id, features, stamp)
$$;
COMMENT ON FUNCTION pgmodels._predict(text, bigint, jsonb, timestamptz) IS 'internal: the core of predict()';

CREATE FUNCTION pgmodels._predict_proba(project_name text, model_id bigint, features float8[], stamp timestamptz)
RETURNS real[] LANGUAGE plpython3u STABLE STRICT PARALLEL SAFE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.serving.predict import predict_proba; return predict_proba(project_name, model_id, features, stamp)
$$;
COMMENT ON FUNCTION pgmodels._predict_proba(text, bigint, float8[], timestamptz) IS 'internal: the core of predict_proba()';

CREATE FUNCTION pgmodels._predict_proba(project_name text, model_id bigint, features jsonb, stamp timestamptz)
RETURNS real[] LANGUAGE plpython3u STABLE STRICT PARALLEL SAFE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.serving.predict import predict_proba; return predict_proba(project_name, model_id, features, stamp)
$$;
COMMENT ON FUNCTION pgmodels._predict_proba(text, bigint, jsonb, timestamptz) IS 'internal: the core of predict_proba()';

CREATE FUNCTION pgmodels._predict_label(project_name text, model_id bigint, features float8[], stamp timestamptz)
RETURNS text LANGUAGE plpython3u STABLE STRICT PARALLEL SAFE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.serving.predict import predict_label; return predict_label(project_name, model_id, features, stamp)
$$;
COMMENT ON FUNCTION pgmodels._predict_label(text, bigint, float8[], timestamptz) IS 'internal: the core of predict_label()';

CREATE FUNCTION pgmodels._predict_label(project_name text, model_id bigint, features jsonb, stamp timestamptz)
RETURNS text LANGUAGE plpython3u STABLE STRICT PARALLEL SAFE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.serving.predict import predict_label; return predict_label(project_name, model_id, features, stamp)
$$;
COMMENT ON FUNCTION pgmodels._predict_label(text, bigint, jsonb, timestamptz) IS 'internal: the core of predict_label()';

CREATE FUNCTION pgmodels._predict_batch(project_name text, model_id bigint, features float8[], stamp timestamptz)
RETURNS SETOF real LANGUAGE plpython3u STABLE STRICT PARALLEL SAFE ROWS 1000
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.serving.predict import predict_batch; return predict_batch(project_name, model_id, features, stamp)
$$;
COMMENT ON FUNCTION pgmodels._predict_batch(text, bigint, float8[], timestamptz) IS 'internal: the core of predict_batch()';

-- The user-facing wrappers: one-line SQL functions that PostgreSQL inlines, so a row
-- costs one PL/Python call. They are not STRICT because coalesce (which raises the
-- core's pending error, see sql/020_environment.sql) is not; a NULL argument still gives
-- NULL, since the cores are STRICT. For each answer (predict, predict_proba, predict_label),
-- each way of naming the model (project name, model id) and each features type.
DO $do$
DECLARE
    answer record;
    target record;
    ftype record;
BEGIN
    FOR answer IN SELECT * FROM (VALUES
        ('predict', 'real', 'the prediction: the class (its label if numeric, else its index) or the value'),
        ('predict_proba', 'real[]', 'the class probabilities, in the order of the model''s labels'),
        ('predict_label', 'text', 'the predicted class label as text (classification)')) AS a(name, rettype, what)
    LOOP
        FOR target IN SELECT * FROM (VALUES
            ('project_name text', '$1, 0', 'the deployed model of a project'),
            ('model_id bigint', '''''::text, $1', 'a model version chosen by id')) AS t(arg, pass, what)
        LOOP
            FOR ftype IN SELECT * FROM (VALUES
                ('real[]', '$2::float8[]'), ('double precision[]', '$2'), ('numeric[]', '$2::float8[]'),
                ('integer[]', '$2::float8[]'), ('bigint[]', '$2::float8[]'), ('smallint[]', '$2::float8[]'),
                ('boolean[]', '$2::integer[]::float8[]'), ('jsonb', '$2'), ('anyelement', 'pg_catalog.to_jsonb($2)')) AS f(sqltype, cast_expr)
            LOOP
                EXECUTE format(
                    'CREATE FUNCTION @extschema@.%I(%s, %s %s) RETURNS %s '
                    'LANGUAGE sql STABLE PARALLEL SAFE '
                    'AS %L',
                    answer.name, target.arg, CASE WHEN ftype.sqltype = 'anyelement' THEN '"row"' ELSE 'features' END,
                    ftype.sqltype, answer.rettype,
                    format('SELECT coalesce(pgmodels.%I(%s, %s, statement_timestamp()), pgmodels._raise_pending(NULL::%s))',
                           '_' || answer.name, target.pass, ftype.cast_expr, answer.rettype));
                EXECUTE format('COMMENT ON FUNCTION @extschema@.%I(%s, %s) IS %L',
                    answer.name, split_part(target.arg, ' ', 2), ftype.sqltype,
                    format('%s for %s, from features given as %s', answer.what, target.what,
                           CASE ftype.sqltype WHEN 'anyelement' THEN 'a row whose columns are named after the features'
                                              WHEN 'jsonb' THEN 'a jsonb object keyed by feature name'
                                              ELSE 'an array in feature order' END));
            END LOOP;
        END LOOP;
    END LOOP;
END
$do$;

CREATE FUNCTION @extschema@.predict_batch(project_name text, features real[]) RETURNS SETOF real
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE ROWS 1000
AS $$
BEGIN
    RETURN QUERY SELECT pgmodels._predict_batch(project_name, 0, features::float8[], statement_timestamp());
    PERFORM pgmodels._raise_pending(NULL::integer);
END
$$;
COMMENT ON FUNCTION @extschema@.predict_batch(text, real[]) IS 'predictions for many rows at once, given flattened into one array (or as a two-dimensional array), one result per row';

CREATE FUNCTION @extschema@.predict_batch(model_id bigint, features real[]) RETURNS SETOF real
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE ROWS 1000
AS $$
BEGIN
    RETURN QUERY SELECT pgmodels._predict_batch('', model_id, features::float8[], statement_timestamp());
    PERFORM pgmodels._raise_pending(NULL::integer);
END
$$;
COMMENT ON FUNCTION @extschema@.predict_batch(bigint, real[]) IS 'predictions of a model version chosen by id for many rows at once, given flattened into one array';
