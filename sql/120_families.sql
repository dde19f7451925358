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

-- The type of a snapshot's column: domains replaced by their base types (an array of a
-- domain by an array of its base type), and a type someone created (an enum, a composite,
-- a range) by text, so that no type's owner can DROP ... CASCADE a column of a snapshot.
-- Built in: made by initdb (an oid below 16384, FirstNormalObjectId) in pg_catalog. The
-- caller converts each column to this type while it copies (training/snapshots.py).
CREATE OR REPLACE FUNCTION pgmodels._snapshot_type(typ oid, typmod integer) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t oid := typ;
    m integer := typmod;
    is_array boolean := false;
    r record;
BEGIN
    LOOP
        SELECT y.typtype, y.typbasetype, y.typtypmod, y.typelem, y.typcategory, y.typnamespace INTO r
          FROM pg_catalog.pg_type y WHERE y.oid = t;
        IF r.typtype = 'd' THEN
            t := r.typbasetype;
            m := CASE WHEN r.typtypmod <> -1 THEN r.typtypmod ELSE m END;
        ELSIF r.typcategory = 'A' AND r.typelem <> 0 AND NOT is_array THEN
            is_array := true;
            t := r.typelem;
        ELSE
            EXIT;
        END IF;
    END LOOP;
    RETURN CASE WHEN t >= 16384 OR r.typnamespace <> 'pg_catalog'::pg_catalog.regnamespace THEN 'text'
                ELSE pg_catalog.format_type(t, m) END
           || CASE WHEN is_array THEN '[]' ELSE '' END;
END
$$;
COMMENT ON FUNCTION pgmodels._snapshot_type(oid, integer) IS 'internal: the built-in type a snapshot column of a given type gets (domains by their base type, user-made types as text)';

-- Definer: only the extension's owner creates in pgmodels_snapshots. The caller has
-- copied the relation's rows, with its own rights (row security, column grants), into a
-- plain temporary table of its own, converting each column to the built-in type the
-- snapshot gives it (pgmodels._snapshot_type: domains by their base types, types someone
-- made as text), so that any cast, domain check or function of the caller's runs as the
-- caller. This makes the snapshot table with exactly the copy's column types, fills it
-- from the copy (ONLY the copy, with no conversion) and gives the caller SELECT, in one
-- step: no caller ever holds INSERT on a snapshot. PostgreSQL runs a cast, a domain's
-- check, a policy or a rule with the rights of whoever evaluates it, here the extension's
-- owner: so it refuses a copy with a column of a type that is not built in (42804), or
-- with row-level security, rules or triggers (42501), before it makes anything. It
-- refuses when the schema is not the extension's.
CREATE OR REPLACE FUNCTION pgmodels._snapshot_create(relation oid, copy oid, credential text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    owner oid := (SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname = 'pgmodels');
    source text;
    snapshot text;
    bad record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = relation AND c.relkind IN ('r', 'p', 'v', 'm', 'f')) THEN
        RAISE EXCEPTION 'relation with oid % does not exist', relation USING ERRCODE = '42P01';
    END IF;
    source := relation::regclass::text;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_extension e ON p.pronamespace = e.extnamespace
                    WHERE e.extname = 'pgmodels' AND p.proname = 'train' AND pg_catalog.has_function_privilege(caller, p.oid, 'EXECUTE')) THEN
        RAISE EXCEPTION 'permission denied for function train' USING ERRCODE = '42501',
            DETAIL = 'Materializing a snapshot is part of training.';
    ELSIF NOT pg_catalog.has_table_privilege(caller, relation, 'SELECT') AND NOT pg_catalog.has_any_column_privilege(caller, relation, 'SELECT') THEN
        RAISE EXCEPTION 'permission denied for relation %', source USING ERRCODE = '42501';
    END IF;
    -- the copy: a plain table of the caller's own session (temporary), owned by the caller
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = copy AND c.relkind = 'r' AND c.relpersistence = 't'
                     AND c.relowner = caller AND c.relnamespace = pg_catalog.pg_my_temp_schema()) THEN
        RAISE EXCEPTION 'the rows of a snapshot must come from a temporary table of the caller''s session'
            USING ERRCODE = '42501';
    END IF;
    -- ... that runs nothing when read
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = copy
                  AND (c.relrowsecurity OR c.relforcerowsecurity OR c.relhasrules OR c.relhastriggers
                       OR EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid)
                       OR EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r WHERE r.ev_class = c.oid)
                       OR EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid))) THEN
        RAISE EXCEPTION 'the copy a snapshot is made from must be a plain table' USING ERRCODE = '42501',
            DETAIL = 'It has row-level security, a policy, a rule or a trigger, which would run with the rights of the extension''s owner when the snapshot reads it.';
    END IF;
    -- ... whose columns are all of built-in types: the snapshot reads them with no conversion
    SELECT a.attname, a.atttypid::pg_catalog.regtype AS typ INTO bad
      FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
     WHERE a.attrelid = copy AND a.attnum > 0 AND NOT a.attisdropped
       AND NOT (t.oid < 16384 AND t.typnamespace = 'pg_catalog'::pg_catalog.regnamespace AND t.typtype <> 'd')  -- 16384: FirstNormalObjectId
     ORDER BY a.attnum LIMIT 1;
    IF bad.attname IS NOT NULL THEN
        RAISE EXCEPTION 'column "%" of the copy a snapshot is made from is of type %, which is not built in', bad.attname, bad.typ
            USING ERRCODE = '42804',
                  DETAIL = 'A snapshot is filled with the rights of the extension''s owner, so it takes only values of built-in types: the caller converts the rest (domains to their base types, types a role made to text) while it copies the rows.',
                  HINT = 'Call snapshot() or train(..., materialize_snapshot => true), which convert each column as the caller.';
    END IF;
    PERFORM pgmodels._snapshot_schema_check();
    snapshot := 'pgmodels_snapshots.' || pg_catalog.quote_ident('snapshot_' || pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', ''));
    EXECUTE pg_catalog.format('CREATE TABLE %s (%s)', snapshot,
        (SELECT pg_catalog.string_agg(pg_catalog.format('%I %s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)),
                                      ', ' ORDER BY a.attnum)
           FROM pg_catalog.pg_attribute a WHERE a.attrelid = copy AND a.attnum > 0 AND NOT a.attisdropped));
    EXECUTE pg_catalog.format('INSERT INTO %s SELECT * FROM ONLY %s', snapshot, copy::regclass);
    EXECUTE pg_catalog.format('COMMENT ON TABLE %s IS %L', snapshot,
                   pg_catalog.format('pgmodels snapshot of %s for role %s, taken at %s', source, caller::regrole, pg_catalog.clock_timestamp()));
    EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA pgmodels_snapshots TO %I', caller::regrole::text);
    EXECUTE pg_catalog.format('GRANT SELECT ON %s TO %I', snapshot, caller::regrole::text);
    RETURN snapshot;
END
$$;
COMMENT ON FUNCTION pgmodels._snapshot_create(oid, oid, text) IS 'internal: a sealed snapshot table, filled from the caller''s temporary copy of a relation the caller may read and train on; the caller may only read it';

-- Before a snapshot is created or read: schema pgmodels_snapshots must be the extension's
-- own (a member, owned by the extension's owner), else 42501.
CREATE OR REPLACE FUNCTION pgmodels._snapshot_schema_check() RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_extension e ON e.extname = 'pgmodels'
                     JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
                      AND d.objid = n.oid AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
                      AND d.refobjid = e.oid AND d.deptype = 'e'
                    WHERE n.nspname = 'pgmodels_snapshots' AND n.nspowner = e.extowner) THEN
        RAISE EXCEPTION 'schema pgmodels_snapshots is not pgmodels''s own' USING ERRCODE = '42501',
            DETAIL = 'Snapshots are kept only in the schema the extension created, owned by the extension''s owner.';
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._snapshot_schema_check() IS 'internal: refuses (42501) unless schema pgmodels_snapshots is the extension''s own';

-- Before training reads a relation of schema pgmodels_snapshots: it must be a snapshot
-- pgmodels made (a plain table owned by the extension's owner, in the extension's schema).
CREATE OR REPLACE FUNCTION pgmodels._snapshot_check(snapshot oid) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pgmodels._snapshot_schema_check();
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_extension e ON e.extname = 'pgmodels'
                    WHERE c.oid = snapshot AND c.relkind = 'r' AND c.relowner = e.extowner) THEN
        RAISE EXCEPTION 'relation % is not a pgmodels snapshot', snapshot::regclass USING ERRCODE = '42501',
            DETAIL = 'A snapshot is a plain table owned by the extension''s owner.';
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._snapshot_check(oid) IS 'internal: refuses (42501) a relation of schema pgmodels_snapshots that is not a plain table owned by the extension''s owner';

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
    pgmodels._snapshot_create(oid, oid, text), pgmodels._snapshot(text), pgmodels._snapshot_type(oid, integer),
    pgmodels._snapshot_schema_check(), pgmodels._snapshot_check(oid),
    pgmodels._train_joint(text, text, text, text[], text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean),
    pgmodels._predict_vector(text, bigint, double precision[], double precision, boolean, text),
    pgmodels._predict_vector(text, bigint, jsonb, double precision, boolean, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    -- check the caller themselves: a credential for this statement and EXECUTE on train()
    -- (the snapshot functions), EXECUTE on train() (the joint core, which train_joint()
    -- calls as the caller)
    pgmodels._snapshot_create(oid, oid, text), pgmodels._snapshot(text),
    -- the type a snapshot gives a column, which the caller converts it to: it reads pg_type
    pgmodels._snapshot_type(oid, integer),
    -- the checks training runs as the caller before it reads a snapshot: they only read
    -- the catalog and raise
    pgmodels._snapshot_schema_check(), pgmodels._snapshot_check(oid),
    pgmodels._train_joint(text, text, text, text[], text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean),
    -- the serving cores the inlined predict_joint and decompose wrappers call as the
    -- caller: they answer only from models _lookup loaded for this statement
    pgmodels._predict_vector(text, bigint, double precision[], double precision, boolean, text),
    pgmodels._predict_vector(text, bigint, jsonb, double precision, boolean, text)
TO PUBLIC;
