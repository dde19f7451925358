-- The model families PostgresML has beyond one-target supervised learning, and
-- materialized snapshots (issue #14).
--
-- Joint regression: train_joint(project, task, relation, y_column_name text[], ...) fits
-- several numeric targets at once; predict_joint() gives one value per target. Clustering
-- and decomposition are tasks of train() (no y_column_name); predict() gives a clustering
-- model's cluster, decompose() a PCA model's components. predict() on a joint or PCA model
-- gives the first value, as PostgresML's does. All three are served only through ONNX,
-- each graph checked against the native model at training (see
-- python_udfs/pgmodels/training/families.py and family_onnx.py).
--
-- Snapshots: train(..., materialize_snapshot => true) copies the relation's rows into a
-- table in schema pgmodels_snapshots, trains on it, and records it as the project's
-- relation, so a retrain or an audit reads the same rows (see training/snapshots.py).

ALTER TABLE pgmodels.projects
    DROP CONSTRAINT projects_task_check,
    ADD CONSTRAINT projects_task_check CHECK (task IN ('classification', 'regression', 'clustering', 'decomposition'));
ALTER TABLE pgmodels.models
    DROP CONSTRAINT models_task_check,
    ADD CONSTRAINT models_task_check CHECK (task IN ('classification', 'regression', 'clustering', 'decomposition'));

-- Definer: only the extension's owner creates in pgmodels_snapshots. It makes an empty
-- table shaped like the relation (its columns read from the catalog: no query on the
-- relation runs or is planned with definer rights),
-- for a caller who may execute train() and may read the relation, and lets the caller
-- insert into it until _snapshot_seal; the caller copies the rows with its own rights.
CREATE OR REPLACE FUNCTION pgmodels._snapshot_create(relation oid, credential text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    source text;
    snapshot text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = relation AND c.relkind IN ('r', 'p', 'v', 'm', 'f')) THEN
        RAISE EXCEPTION 'relation with oid % does not exist', relation USING ERRCODE = '42P01';
    END IF;
    source := relation::regclass::text;
    IF NOT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_extension e ON p.pronamespace = e.extnamespace
                    WHERE e.extname = 'pgmodels' AND p.proname = 'train' AND has_function_privilege(caller, p.oid, 'EXECUTE')) THEN
        RAISE EXCEPTION 'permission denied for function train' USING ERRCODE = '42501',
            DETAIL = 'Materializing a snapshot is part of training.';
    ELSIF NOT has_table_privilege(caller, relation, 'SELECT') AND NOT has_any_column_privilege(caller, relation, 'SELECT') THEN
        RAISE EXCEPTION 'permission denied for relation %', source USING ERRCODE = '42501';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'pgmodels_snapshots') THEN
        CREATE SCHEMA pgmodels_snapshots;
        COMMENT ON SCHEMA pgmodels_snapshots IS 'pgmodels: training snapshots (train(..., materialize_snapshot => true)); each table is readable by the role that trained on it';
        REVOKE ALL ON SCHEMA pgmodels_snapshots FROM PUBLIC;
    END IF;
    snapshot := 'pgmodels_snapshots.' || quote_ident('snapshot_' || replace(gen_random_uuid()::text, '-', ''));
    -- the columns from the catalog: no statement that names the caller's relation runs
    -- with definer rights (CREATE TABLE AS ... WITH NO DATA does not plan it today; this
    -- does not depend on that)
    EXECUTE format('CREATE TABLE %s (%s)', snapshot,
                   (SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum)
                      FROM pg_attribute a WHERE a.attrelid = relation AND a.attnum > 0 AND NOT a.attisdropped));
    EXECUTE format('COMMENT ON TABLE %s IS %L', snapshot,
                   format('pgmodels snapshot of %s for role %s, taken at %s', source, caller::regrole, clock_timestamp()));
    EXECUTE format('GRANT USAGE ON SCHEMA pgmodels_snapshots TO %I', caller::regrole::text);
    EXECUTE format('GRANT SELECT, INSERT ON %s TO %I', snapshot, caller::regrole::text);
    RETURN snapshot;
END
$$;
COMMENT ON FUNCTION pgmodels._snapshot_create(oid, text) IS 'internal: an empty snapshot table shaped like a relation the caller may read and train on, which the caller may fill until _snapshot_seal';

CREATE OR REPLACE FUNCTION pgmodels._snapshot_seal(snapshot text, credential text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    rel oid := to_regclass(snapshot);
BEGIN
    IF rel IS NULL OR (SELECT c.relnamespace::regnamespace::text FROM pg_class c WHERE c.oid = rel) <> 'pgmodels_snapshots' THEN
        RAISE EXCEPTION 'snapshot % does not exist', snapshot USING ERRCODE = '42P01';
    END IF;
    EXECUTE format('REVOKE INSERT ON %s FROM %I', rel::regclass, caller::regrole::text);
END
$$;
COMMENT ON FUNCTION pgmodels._snapshot_seal(text, text) IS 'internal: takes the caller''s INSERT on its snapshot back once the rows are copied';

CREATE OR REPLACE FUNCTION pgmodels._train_joint(project_name text, task text, relation_name text, y_column_name text[],
    algorithm text, hyperparams jsonb, search text, search_params jsonb, search_args jsonb, test_size real,
    test_sampling text, automatic_deploy boolean, preprocess jsonb, materialize_snapshot boolean)
RETURNS TABLE (project text, task text, algorithm text, deployed boolean, model_id bigint, version integer,
               runtime text, metrics jsonb)
LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return []
from pgmodels.training.family_udf import train_joint; return train_joint(project_name, task, relation_name, y_column_name, algorithm, hyperparams, search, search_params, search_args, test_size, test_sampling, automatic_deploy, preprocess, materialize_snapshot)
$$;
COMMENT ON FUNCTION pgmodels._train_joint(text, text, text, text[], text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean) IS 'internal: the core of train_joint()';

-- Like train(): the caller's rights, NULL arguments reuse the project's previous
-- training; only roles that may execute train() may (the core checks it).
CREATE OR REPLACE FUNCTION @extschema@.train_joint(
    project_name text,
    task text DEFAULT NULL,
    relation_name text DEFAULT NULL,
    y_column_name text[] DEFAULT NULL,
    algorithm text DEFAULT NULL,
    hyperparams jsonb DEFAULT NULL,
    search text DEFAULT NULL,
    search_params jsonb DEFAULT NULL,
    search_args jsonb DEFAULT NULL,
    test_size real DEFAULT NULL,
    test_sampling text DEFAULT NULL,
    automatic_deploy boolean DEFAULT true,
    preprocess jsonb DEFAULT NULL,
    materialize_snapshot boolean DEFAULT false)
RETURNS TABLE (project text, task text, algorithm text, deployed boolean, model_id bigint, version integer,
               runtime text, metrics jsonb)
LANGUAGE sql VOLATILE
AS $$
    SELECT * FROM pgmodels._train_joint($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
    UNION ALL  -- raises the error the core recorded, if any, once the core has run
    SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE pgmodels._raise_pending(NULL::boolean)
$$;
COMMENT ON FUNCTION @extschema@.train_joint(text, text, text, text[], text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean) IS 'trains a joint (multi-output) regression model version on several target columns at once, converted to ONNX and checked';

-- The vector answers' cores, like the predict cores (sql/040_serving.sql): they answer
-- only from a model pgmodels._lookup loaded for this statement.
DO $do$
DECLARE
    core text;
    target record;
    ftype record;
    fn record;
BEGIN
    FOREACH core IN ARRAY ARRAY['float8[]', 'jsonb'] LOOP
        EXECUTE format(
            'CREATE OR REPLACE FUNCTION pgmodels._predict_vector(project_name text, model_id bigint, features %s, '
            'stamp double precision, loaded boolean, kind text) RETURNS real[] LANGUAGE plpython3u STABLE PARALLEL SAFE AS %L',
            core, E'f = GD.get(\'pgmodels.predict_vector\')\n'
                  || E'if f is None and \'pgmodels.active\' in GD: from pgmodels.serving.vectors import predict_vector as f; GD[\'pgmodels.predict_vector\'] = f\n'
                  || 'return f(project_name, model_id, features, stamp, loaded, kind) if f else None');
        EXECUTE format('COMMENT ON FUNCTION pgmodels._predict_vector(text, bigint, %s, double precision, boolean, text) IS %L',
                       core, 'internal: the core of predict_joint() and decompose()');
    END LOOP;
    FOR fn IN SELECT * FROM (VALUES
        ('predict_joint', 'joint', 'the values of a joint regression model''s targets, in the order they were trained'),
        ('decompose', 'decompose', 'the components of a decomposition (PCA) model')) AS f(name, kind, what)
    LOOP
        FOR target IN SELECT * FROM (VALUES
            ('project_name text', '$1, 0', 'the deployed model of a project'),
            ('model_id bigint', '''''::text, $1', 'a model version chosen by id')) AS t(arg, pass, what)
        LOOP
            FOR ftype IN SELECT * FROM (VALUES
                ('real[]', '$2::float8[]'), ('double precision[]', '$2'), ('numeric[]', '$2::float8[]'),
                ('integer[]', '$2::float8[]'), ('bigint[]', '$2::float8[]'), ('smallint[]', '$2::float8[]'),
                ('jsonb', '$2')) AS f(sqltype, cast_expr)
            LOOP
                EXECUTE format(
                    'CREATE OR REPLACE FUNCTION @extschema@.%I(%s, features %s) RETURNS real[] '
                    'LANGUAGE sql STABLE PARALLEL SAFE AS %L',
                    fn.name, target.arg, ftype.sqltype,
                    format('SELECT coalesce(pgmodels._predict_vector(%1$s, %2$s, pgmodels._stamp(), NULL, %3$L), '
                           'pgmodels._predict_vector(%1$s, %2$s, pgmodels._stamp(), pgmodels._lookup(%1$s, pgmodels._credential()), %3$L), '
                           'pgmodels._raise_pending(NULL::real[]))', target.pass, ftype.cast_expr, fn.kind));
                EXECUTE format('COMMENT ON FUNCTION @extschema@.%I(%s, %s) IS %L', fn.name, split_part(target.arg, ' ', 2),
                               ftype.sqltype, format('%s for %s, from features given as %s', fn.what, target.what,
                                                     CASE ftype.sqltype WHEN 'jsonb' THEN 'a jsonb object keyed by feature name'
                                                                        ELSE 'an array in feature order' END));
            END LOOP;
        END LOOP;
    END LOOP;
END
$do$;

CREATE OR REPLACE FUNCTION pgmodels._snapshot(relation_name text)
RETURNS TABLE (relation text, source text, rows bigint)
LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return []
from pgmodels.training.snapshots import snapshot_udf; return snapshot_udf(relation_name)
$$;
COMMENT ON FUNCTION pgmodels._snapshot(text) IS 'internal: the core of snapshot()';

-- For roles that may execute train() (the core checks it), with the caller's rights.
CREATE OR REPLACE FUNCTION @extschema@.snapshot(relation_name text)
RETURNS TABLE (relation text, source text, rows bigint)
LANGUAGE sql VOLATILE
AS $$
    SELECT * FROM pgmodels._snapshot($1)
    UNION ALL
    SELECT NULL, NULL, NULL WHERE pgmodels._raise_pending(NULL::boolean)
$$;
COMMENT ON FUNCTION @extschema@.snapshot(text) IS 'copies a relation''s rows into a snapshot table of pgmodels'' own (schema pgmodels_snapshots), readable by the caller, that train() can train on again and again';

-- Grants of this area. Functions are created executable by PUBLIC; internal ones are not.
REVOKE EXECUTE ON FUNCTION
    pgmodels._snapshot_create(oid, text), pgmodels._snapshot_seal(text, text), pgmodels._snapshot(text),
    pgmodels._train_joint(text, text, text, text[], text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean),
    pgmodels._predict_vector(text, bigint, double precision[], double precision, boolean, text),
    pgmodels._predict_vector(text, bigint, jsonb, double precision, boolean, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    -- check the caller themselves: a credential for this statement and EXECUTE on train()
    -- (the snapshot functions), EXECUTE on train() (the joint core, which train_joint()
    -- calls as the caller)
    pgmodels._snapshot_create(oid, text), pgmodels._snapshot_seal(text, text), pgmodels._snapshot(text),
    pgmodels._train_joint(text, text, text, text[], text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean),
    -- the serving cores the inlined predict_joint and decompose wrappers call as the
    -- caller: they answer only from models _lookup loaded for this statement
    pgmodels._predict_vector(text, bigint, double precision[], double precision, boolean, text),
    pgmodels._predict_vector(text, bigint, jsonb, double precision, boolean, text)
TO PUBLIC;
