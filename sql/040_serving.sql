-- Serving: predict(), predict_proba(), predict_label(), predict_batch().
--
-- How a row is scored. The user-facing functions are one-line SQL wrappers that
-- PostgreSQL inlines into the calling query:
--
--   coalesce(core(project, id, features, pgmodels._stamp(), NULL),
--            core(project, id, features, pgmodels._stamp(),
--                 pgmodels._lookup(project, id, pgmodels._credential())),
--            pgmodels._raise_pending(NULL::<result type>))
--
-- The first call answers from the backend's cache when it already holds the model this
-- statement serves; that is every row but the first, and it costs no query. Otherwise
-- it returns NULL and the second call runs: _lookup (PL/pgSQL, definer) checks that the
-- calling role may predict with the project, activates the Python environment, reads
-- the model from the catalog and hands it to the cache itself (pgmodels._load, which
-- no other role may call), and the core then answers from the cache. The cores take no
-- model from their caller, so a forged catalog record has nowhere to go in. The lookup
-- is PL/pgSQL because PL/Python's queries open subtransactions, which parallel workers
-- may not; so predict is PARALLEL SAFE for real. All of it only reads, under the
-- statement's snapshot: a committed deploy is seen by the next statement (and, inside a
-- procedure, after the next COMMIT: the stamp changes with both), one statement never
-- mixes two versions, and it works on a read-only hot standby. Errors the Python side
-- records are raised by _raise_pending (see sql/020_environment.sql).
--
-- Features: an array is one row in feature order (a multi-dimensional array is read in
-- row-major order, so an image or a window of readings is one row); a row of a named
-- type (a table's row) and a jsonb object are matched by name, an array column of a
-- model trained on one by its name; an anonymous row, ROW(a, b, c), whose columns
-- PostgreSQL names f1, f2, ... in order, is positional, like an array (the wrapper hands
-- a record over as its to_json text, which keeps the column order, in a jsonb array
-- marked 'pgmodels:record'; a record with other column names, a subquery's row, is
-- matched by name).

-- The model a project serves (model_id 0) or a model by id, once the caller's privilege
-- is checked. Only definer functions call it.
CREATE OR REPLACE FUNCTION pgmodels._resolve(project_name text, model_id bigint, caller oid, privilege text,
                                             with_artifact boolean DEFAULT true)
RETURNS pgmodels.served_model
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    chosen bigint := nullif(model_id, 0);
    proj pgmodels.projects;
    served pgmodels.served_model;
BEGIN
    IF chosen IS NULL THEN
        SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.name = project_name;
        IF proj.id IS NULL THEN
            RAISE EXCEPTION 'project "%" does not exist', project_name USING ERRCODE = '42704',
                HINT = 'Train one with train(), or see pgmodels.overview for the projects there are.';
        END IF;
    ELSE
        SELECT p.* INTO proj FROM pgmodels.models m JOIN pgmodels.projects p ON p.id = m.project_id WHERE m.id = chosen;
        IF proj.id IS NULL THEN
            RAISE EXCEPTION 'model % does not exist', chosen USING ERRCODE = '42704';
        END IF;
    END IF;
    IF NOT pgmodels._may(caller, proj.id, privilege) THEN
        RAISE EXCEPTION 'permission denied for project "%"', proj.name
            USING ERRCODE = '42501',
                  DETAIL = format('Role "%s" has no %s privilege on it.', caller::regrole, privilege),
                  HINT = format('Its owner can grant it: SELECT grant_project(%L, %L, %L).', proj.name,
                                caller::regrole::text, privilege);
    END IF;
    IF chosen IS NULL THEN
        SELECT d.model_id INTO chosen FROM pgmodels.deployments d WHERE d.project_id = proj.id ORDER BY d.id DESC LIMIT 1;
        IF chosen IS NULL THEN
            RAISE EXCEPTION 'project "%" has no deployed model', project_name USING ERRCODE = '55000',
                HINT = 'Deploy one with deploy(), or train with automatic_deploy => true.';
        END IF;
    END IF;
    SELECT m.id, proj.name, m.version, m.task, m.runtime, CASE WHEN with_artifact THEN m.artifact END,
           m.artifact_sha256, m.feature_names,
           m.feature_types, m.labels::text, ARRAY(SELECT jsonb_array_elements_text(m.training -> 'nullable')),
           m.training -> 'array_features', m.algorithm = 'onnx',
           CASE WHEN jsonb_typeof(m.training -> 'work_per_row') = 'number'
                THEN (m.training ->> 'work_per_row')::double precision END,
           CASE WHEN with_artifact THEN m.native_trees END
      INTO served FROM pgmodels.models m WHERE m.id = chosen;
    RETURN served;
END
$$;
COMMENT ON FUNCTION pgmodels._resolve(text, bigint, oid, text, boolean) IS 'internal: the model a project serves (model_id 0) or a model by id, after checking the role''s privilege on its project; with_artifact false leaves the artifact out (the backend may have the model loaded already)';

-- Loads a model into the backend's cache as the one this statement serves for a project
-- or model id. Not for PUBLIC: only _lookup calls it, with what it read from the catalog.
-- once: the caller is not the session's own role (a SECURITY DEFINER function is
-- predicting): the model then serves only the call that loaded it, so that code the
-- session runs as itself cannot use the definer's lookup to reach the model. caller: the
-- role _lookup checked (an oid), whose decision the backend keeps for later statements
-- (see python_udfs/pgmodels/serving/cache.py).
CREATE OR REPLACE FUNCTION pgmodels._load(project_name text, model_id bigint, stamp double precision,
                                          model pgmodels.served_model, once boolean, caller bigint,
                                          rollout jsonb, candidate pgmodels.served_model)
RETURNS boolean
LANGUAGE plpython3u STABLE PARALLEL SAFE
AS $$
if 'pgmodels.active' not in GD: return None  # _lookup activates first; a direct call has nothing to load into
from pgmodels.serving.cache import load; return load(project_name, model_id, stamp, model, once, caller, rollout, candidate)
$$;
COMMENT ON FUNCTION pgmodels._load(text, bigint, double precision, pgmodels.served_model, boolean, bigint, jsonb, pgmodels.served_model) IS 'internal: loads a catalog model (and the candidate of the project''s active rollout, which the statement''s answers are then routed by) into the backend''s cache for this statement (or for one call) and keeps the decision for the role checked; called by _lookup only';

-- Without a rollout. Not for PUBLIC either.
CREATE OR REPLACE FUNCTION pgmodels._load(project_name text, model_id bigint, stamp double precision,
                                          model pgmodels.served_model, once boolean, caller bigint)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT pgmodels._load($1, $2, $3, $4, $5, $6, NULL, NULL) $$;
COMMENT ON FUNCTION pgmodels._load(text, bigint, double precision, pgmodels.served_model, boolean, bigint) IS 'internal: loads a catalog model into the backend''s cache for this statement (or for one call) and keeps the decision for the role checked, without a rollout';

-- 0.2.0's signature: loads without keeping a decision. Not for PUBLIC either.
CREATE OR REPLACE FUNCTION pgmodels._load(project_name text, model_id bigint, stamp double precision,
                                          model pgmodels.served_model, once boolean)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT pgmodels._load($1, $2, $3, $4, $5, NULL, NULL, NULL) $$;
COMMENT ON FUNCTION pgmodels._load(text, bigint, double precision, pgmodels.served_model, boolean) IS 'internal: loads a catalog model into the backend''s cache for this statement (or for one call), keeping no decision (0.2.0''s signature)';

-- Definer: the catalog is not readable by PUBLIC. The administrator's master switch:
-- revoking EXECUTE on it from PUBLIC takes predicting and exporting from every role it
-- is not granted to, whatever the projects' grants say.
CREATE OR REPLACE FUNCTION pgmodels._lookup(project_name text, model_id bigint, credential text, routed boolean)
RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid;
    once boolean;
    loaded boolean;
    ro pgmodels.rollout_runs;
    route jsonb;
BEGIN
    IF project_name IS NULL OR model_id IS NULL THEN
        RETURN NULL;
    END IF;
    caller := pgmodels._verify_caller(credential);
    -- the master switch is EXECUTE on the three-argument form, which calls this one
    IF NOT has_function_privilege(caller, 'pgmodels._lookup(text, bigint, text)', 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for function _lookup' USING ERRCODE = '42501',
            DETAIL = 'An administrator has revoked predicting from this role (EXECUTE on pgmodels._lookup(text, bigint, text)).';
    END IF;
    IF pgmodels._activate() IS NOT NULL THEN
        PERFORM pgmodels._raise_pending(NULL::integer);
    END IF;
    once := caller IS DISTINCT FROM (SELECT r.oid FROM pg_roles r WHERE r.rolname = coalesce(
                nullif(current_setting('role'), 'none'), session_user));
    -- The project's active rollout (sql/127_rollouts.sql): for a model id (a batch job's
    -- pinned version), only while that version is the rollout's champion.
    IF routed THEN
        IF model_id = 0 THEN
            SELECT r.* INTO ro FROM pgmodels.rollout_runs r JOIN pgmodels.projects p ON p.id = r.project_id
             WHERE p.name = project_name AND r.status = 'active';
        ELSE
            SELECT r.* INTO ro FROM pgmodels.rollout_runs r WHERE r.champion_id = model_id AND r.status = 'active';
        END IF;
        IF ro.id IS NOT NULL THEN
            route := jsonb_build_object('id', ro.id, 'mode', ro.mode, 'fraction', ro.fraction);
        END IF;
    END IF;
    -- Without the artifact first: reading and handing over its bytes costs most of a
    -- lookup, and the backend usually has the model loaded (by id and sha256) already.
    loaded := pgmodels._load(project_name, model_id, pgmodels._stamp(),
                             pgmodels._resolve(project_name, model_id, caller, 'predict', false), once, caller::bigint,
                             route, CASE WHEN route IS NOT NULL
                                         THEN pgmodels._resolve('', ro.candidate_id, caller, 'predict', false) END);
    IF loaded IS NOT NULL AND NOT loaded THEN
        loaded := pgmodels._load(project_name, model_id, pgmodels._stamp(),
                                 pgmodels._resolve(project_name, model_id, caller, 'predict', true), once, caller::bigint,
                                 route, CASE WHEN route IS NOT NULL
                                             THEN pgmodels._resolve('', ro.candidate_id, caller, 'predict', true) END);
    END IF;
    IF NOT coalesce(loaded, false) THEN
        PERFORM pgmodels._raise_pending(NULL::integer);
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION pgmodels._lookup(text, bigint, text, boolean) IS 'internal: checks that the caller may predict with a project (model_id 0) or a model, and loads it into the backend''s cache for this statement, with the project''s active rollout when routed (for a model id: while it is the rollout''s champion)';

-- Definer: the catalog is not readable by PUBLIC. The administrator's master switch:
-- revoking EXECUTE on it from PUBLIC takes predicting and exporting from every role it
-- is not granted to, whatever the projects' grants say. A project's answers are routed
-- by its active rollout; a model chosen by id is that model's own.
CREATE OR REPLACE FUNCTION pgmodels._lookup(project_name text, model_id bigint, credential text) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RETURN pgmodels._lookup(project_name, model_id, credential, model_id = 0); END $$;
COMMENT ON FUNCTION pgmodels._lookup(text, bigint, text) IS 'internal: checks that the caller may predict with a project (model_id 0) or a model, and loads it into the backend''s cache for this statement; revoke it from PUBLIC to turn predicting and exporting off for all but the roles granted it';

-- What the backends' kept decisions rest on (python_udfs/pgmodels/serving/cache.py):
-- every write to the tables a lookup reads queues an invalidation message, at commit only
-- (a rolled-back write queues nothing), that every backend counts when it next reads the
-- queue (PostgreSQL's SharedInvalidMessageCounter). The message names the written table
-- as a catalog that has no cache, so a backend does nothing with it but count it.
-- PL/Python for ctypes: PostgreSQL exports CacheInvalidateCatalog, which SQL cannot reach;
-- it only appends to the transaction's list of messages. Not a definer: the writers are
-- pgmodels' definer functions (and superusers).
CREATE OR REPLACE FUNCTION pgmodels._catalog_changed() RETURNS trigger
LANGUAGE plpython3u
AS $$
send = GD.get('pgmodels.catalog_changed')
if send is None:
    import ctypes
    try:
        send = ctypes.CDLL(None).CacheInvalidateCatalog
        send.argtypes, send.restype = [ctypes.c_uint], None
    except (OSError, AttributeError):  # then no backend keeps a decision either (serving/backend.py)
        send = False
    GD['pgmodels.catalog_changed'] = send
if send:
    send(int(TD['relid']))
return None
$$;
COMMENT ON FUNCTION pgmodels._catalog_changed() IS 'internal: a trigger on the serving catalog (projects, models, deployments, project_grants, rollout_runs): queues an invalidation message at commit, which ends every backend''s kept serving decisions';

DO $do$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['projects', 'models', 'deployments', 'project_grants'] LOOP
        EXECUTE format('CREATE OR REPLACE TRIGGER catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE '
                       'ON pgmodels.%I FOR EACH STATEMENT EXECUTE FUNCTION pgmodels._catalog_changed()', t);
        -- also where triggers are off (session_replication_role = replica: a logical
        -- replica's apply, a restore with triggers disabled)
        EXECUTE format('ALTER TABLE pgmodels.%I ENABLE ALWAYS TRIGGER catalog_changed', t);
    END LOOP;
END
$do$;

-- The forms features take in the user-facing wrappers (predict, predict_proba,
-- predict_label, with and without a key, explain_prediction): each SQL type and the
-- expression that hands it to a core (float8[] or jsonb). A row of a named type becomes
-- jsonb keyed by column; an anonymous ROW(...) keeps its column order (see above).
CREATE OR REPLACE FUNCTION pgmodels._feature_forms() RETURNS TABLE (sqltype text, cast_expr text)
LANGUAGE sql IMMUTABLE
AS $f$ VALUES
    ('real[]', '$2'), ('double precision[]', '$2'), ('numeric[]', '$2::float8[]'),
    ('integer[]', '$2::float8[]'), ('bigint[]', '$2::float8[]'), ('smallint[]', '$2::float8[]'),
    ('boolean[]', '$2::integer[]::float8[]'), ('jsonb', '$2'),
    ('anyelement', 'CASE WHEN pg_catalog.pg_typeof($2) = ''pg_catalog.record''::pg_catalog.regtype '
                   'THEN pg_catalog.jsonb_build_array(''pgmodels:record'', pg_catalog.to_json($2)::text) '
                   'ELSE pg_catalog.to_jsonb($2) END')
$f$;
COMMENT ON FUNCTION pgmodels._feature_forms() IS 'internal: the SQL types features may come as in the user-facing wrappers, and the expression handing each to a core';

-- The cores and the user-facing wrappers: for each answer (predict, predict_proba,
-- predict_label), the cores take features as float8[] (arrays) or jsonb (objects, and
-- rows, which the wrappers turn into jsonb since PL/Python takes no polymorphic
-- arguments); the wrappers exist for each way of naming the model (project name, model
-- id) and each features type. The wrappers are not STRICT, since coalesce is not, but
-- NULL in gives NULL out.
DO $do$
DECLARE
    answer record;
    target record;
    ftype record;
    core text;
BEGIN
    FOR answer IN SELECT * FROM (VALUES
        ('predict', 'real', 'the prediction: the class (its label if numeric, else its index) or the value'),
        ('predict_proba', 'real[]', 'the class probabilities, in the order of the model''s labels'),
        ('predict_label', 'text', 'the predicted class label as text (classification)')) AS a(name, rettype, what)
    LOOP
        -- real[] has a core of its own: it is the usual features column, and a cast per
        -- row to float8[] costs a few percent of a row's time
        FOREACH core IN ARRAY ARRAY['float8[]', 'float4[]', 'jsonb'] LOOP
            EXECUTE format(
                'CREATE OR REPLACE FUNCTION pgmodels.%I(project_name text, model_id bigint, features %s, stamp double precision, '
                'loaded boolean) RETURNS %s LANGUAGE plpython3u STABLE PARALLEL SAFE AS %L',
                '_' || answer.name, core, answer.rettype,
                format(E'f = GD.get(\'pgmodels.%1$s\')\n'
                       || E'if f is None and \'pgmodels.active\' in GD: from pgmodels.serving.predict import %1$s as f; GD[\'pgmodels.%1$s\'] = f\n'
                       || 'return f(project_name, model_id, features, stamp, loaded) if f else None', answer.name));
            EXECUTE format('COMMENT ON FUNCTION pgmodels.%I(text, bigint, %s, double precision, boolean) IS %L',
                '_' || answer.name, core, format('internal: the core of %s()', answer.name));
        END LOOP;
        FOR target IN SELECT * FROM (VALUES
            ('project_name text', '$1, 0', 'the deployed model of a project'),
            ('model_id bigint', '''''::text, $1', 'a model version chosen by id')) AS t(arg, pass, what)
        LOOP
            FOR ftype IN SELECT f.sqltype, f.cast_expr FROM pgmodels._feature_forms() f
            LOOP
                -- predict() from real[] and double precision[], the forms a features column
                -- usually takes: the same wrapper in C (extension/src/native.c), which also
                -- answers a tree ensemble's row itself, and costs no planning per statement
                IF answer.name = 'predict' AND ftype.sqltype IN ('real[]', 'double precision[]') THEN
                    EXECUTE format(
                        'CREATE OR REPLACE FUNCTION @extschema@.predict(%s, features %s) RETURNS real '
                        'LANGUAGE c STABLE PARALLEL SAFE AS %L, %L',
                        target.arg, ftype.sqltype, '$libdir/pgmodels_native',
                        format('pgmodels_predict_%s_%s', CASE WHEN target.arg LIKE 'model_id%' THEN 'id' ELSE 'name' END,
                               CASE ftype.sqltype WHEN 'real[]' THEN 'f4' ELSE 'f8' END));
                ELSE
                EXECUTE format(
                    'CREATE OR REPLACE FUNCTION @extschema@.%I(%s, %s %s) RETURNS %s '
                    'LANGUAGE sql STABLE PARALLEL SAFE AS %L',
                    answer.name, target.arg, CASE WHEN ftype.sqltype = 'anyelement' THEN '"row"' ELSE 'features' END,
                    ftype.sqltype, answer.rettype,
                    format('SELECT coalesce(%5$s pgmodels.%1$I(%2$s, %3$s, pgmodels._stamp(), NULL), '
                           'pgmodels.%1$I(%2$s, %3$s, pgmodels._stamp(), pgmodels._lookup(%2$s, pgmodels._credential())), '
                           'pgmodels._raise_pending(NULL::%4$s))',
                           '_' || answer.name, target.pass, ftype.cast_expr, answer.rettype,
                           -- a tree ensemble's one-row predict in C (sql/037_serving_native.sql)
                           CASE WHEN answer.name = 'predict' AND ftype.sqltype LIKE '%[]'
                                THEN format('pgmodels._predict_native(%s, %s),', target.pass, ftype.cast_expr) ELSE '' END));
                END IF;
                EXECUTE format('COMMENT ON FUNCTION @extschema@.%I(%s, %s) IS %L',
                    answer.name, split_part(target.arg, ' ', 2), ftype.sqltype,
                    format('%s for %s, from features given as %s', answer.what, target.what,
                           CASE ftype.sqltype WHEN 'anyelement' THEN 'a row (a table''s row matched by column name, an anonymous ROW(...) by position)'
                                              WHEN 'jsonb' THEN 'a jsonb object keyed by feature name (or an array in feature order)'
                                              ELSE 'an array in feature order' END));
            END LOOP;
        END LOOP;
    END LOOP;
END
$do$;

CREATE OR REPLACE FUNCTION pgmodels._predict_batch(project_name text, model_id bigint, features bytea, stamp double precision,
                                        loaded boolean)
RETURNS SETOF real LANGUAGE plpython3u STABLE PARALLEL SAFE ROWS 1000
AS $$
if 'pgmodels.active' not in GD: return []  # _lookup activates first: without it no model is loaded to answer
from pgmodels.serving.predict import predict_batch; return predict_batch(project_name, model_id, features, stamp, loaded)
$$;
COMMENT ON FUNCTION pgmodels._predict_batch(text, bigint, bytea, double precision, boolean) IS 'internal: the core of predict_batch(); features come as array_send(real[]), which Python reads in place';

CREATE OR REPLACE FUNCTION @extschema@.predict_batch(project_name text, features real[]) RETURNS SETOF real
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE ROWS 1000
AS $$
DECLARE
    answers real[] := pgmodels._predict_batch_native(project_name, 0, features);  -- a kept decision's, in C
    loaded boolean;
BEGIN
    IF answers IS NULL THEN
        -- the lookup's decision serves the rest of the statement: a tree ensemble's in C too
        loaded := pgmodels._lookup(project_name, 0, pgmodels._credential());
        answers := CASE WHEN loaded THEN pgmodels._predict_batch_native(project_name, 0, features) END;
    END IF;
    IF answers IS NOT NULL THEN
        RETURN QUERY SELECT pg_catalog.unnest(answers);
        RETURN;
    END IF;
    RETURN QUERY SELECT pgmodels._predict_batch(project_name, 0, pg_catalog.array_send(features), pgmodels._stamp(),
                                                 loaded);
    PERFORM pgmodels._raise_pending(NULL::integer);
END
$$;
COMMENT ON FUNCTION @extschema@.predict_batch(text, real[]) IS 'predictions for many rows at once, given flattened into one array (or as a two-dimensional array), one result per row';

CREATE OR REPLACE FUNCTION @extschema@.predict_batch(model_id bigint, features real[]) RETURNS SETOF real
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE ROWS 1000
AS $$
DECLARE
    answers real[] := pgmodels._predict_batch_native('', model_id, features);  -- a kept decision's, in C
    loaded boolean;
BEGIN
    IF answers IS NULL THEN
        -- the lookup's decision serves the rest of the statement: a tree ensemble's in C too
        loaded := pgmodels._lookup('', model_id, pgmodels._credential());
        answers := CASE WHEN loaded THEN pgmodels._predict_batch_native('', model_id, features) END;
    END IF;
    IF answers IS NOT NULL THEN
        RETURN QUERY SELECT pg_catalog.unnest(answers);
        RETURN;
    END IF;
    RETURN QUERY SELECT pgmodels._predict_batch('', model_id, pg_catalog.array_send(features), pgmodels._stamp(),
                                                 loaded);
    PERFORM pgmodels._raise_pending(NULL::integer);
END
$$;
COMMENT ON FUNCTION @extschema@.predict_batch(bigint, real[]) IS 'predictions of a model version chosen by id for many rows at once, given flattened into one array';
