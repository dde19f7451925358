-- Explanations: why a model version made a prediction, feature by feature.
--
-- A version's explainer record (sql/124_explain_catalog.sql) is made by train() and
-- stored with it; set_reference() makes an approximate one for a model that has none.
-- This file holds the writer, the view of the global importances, and (step by step)
-- explain_prediction() and explain_batch().

-- Storing an explainer record, as _store_model stores a model: train() stages the record
-- it has just made under a one-time token in the backend's Python state and calls
-- _store_explainer(token), which takes it back here; a direct call has nothing to name.
CREATE OR REPLACE FUNCTION pgmodels._take_staged_explainer(token text,
    OUT role oid, OUT model_id bigint, OUT kind text, OUT exact boolean, OUT method text, OUT output text,
    OUT record bytea, OUT importance jsonb, OUT importance_rows integer, OUT source text)
LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD: return None  # nothing was staged in this backend
from pgmodels.explain.store import take_staged; return take_staged(token)
$$;
COMMENT ON FUNCTION pgmodels._take_staged_explainer(text) IS 'internal: takes the explainer record train() or set_reference() staged in this backend under a one-time token';

-- Definer: only it writes pgmodels.model_explainers, which no other role may write. The
-- staged role must own the model's project.
CREATE OR REPLACE FUNCTION pgmodels._store_explainer(token text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    proj pgmodels.projects;
BEGIN
    SELECT * INTO s FROM pgmodels._take_staged_explainer(token);
    IF s.role IS NULL THEN
        RAISE EXCEPTION 'no explainer is staged under this token'
            USING ERRCODE = '42501',
                  DETAIL = 'Only train() and set_reference() store explainers, each the one it has just made and checked.';
    END IF;
    SELECT p.* INTO proj FROM pgmodels.models m JOIN pgmodels.projects p ON p.id = m.project_id
     WHERE m.id = s.model_id FOR UPDATE OF p;
    IF proj.id IS NULL THEN
        RAISE EXCEPTION 'model % does not exist', s.model_id USING ERRCODE = '42704';
    END IF;
    PERFORM pgmodels._require_owner(s.role, proj);
    INSERT INTO pgmodels.model_explainers AS e (model_id, kind, exact, method, output, record, record_sha256,
                                                importance, importance_rows, source)
    VALUES (s.model_id, s.kind, s.exact, s.method, s.output, s.record, pg_catalog.sha256(s.record),
            s.importance, s.importance_rows, s.source)
    ON CONFLICT (model_id) DO UPDATE
       SET kind = EXCLUDED.kind, exact = EXCLUDED.exact, method = EXCLUDED.method, output = EXCLUDED.output,
           record = EXCLUDED.record, record_sha256 = EXCLUDED.record_sha256, importance = EXCLUDED.importance,
           importance_rows = EXCLUDED.importance_rows, source = EXCLUDED.source,
           created_by = session_user, created_at = now()
     -- set_reference() replaces only what an earlier set_reference() made, never training's
     WHERE e.source = 'set_reference' AND EXCLUDED.source = 'set_reference';
END
$$;
COMMENT ON FUNCTION pgmodels._store_explainer(text) IS 'internal: stores the explainer record train() or set_reference() staged under a token, after checking that the staging role owns the model''s project';

-- The global importances, for the roles that may use the project (as its metrics are).
CREATE OR REPLACE VIEW pgmodels.explainers WITH (security_barrier) AS
SELECT p.name AS project, m.id AS model_id, m.version, e.kind, e.exact, e.method, e.output,
       e.importance, e.importance_rows, e.source, e.created_at, pg_catalog.length(e.record) AS record_bytes
FROM pgmodels.model_explainers e
JOIN pgmodels.models m ON m.id = e.model_id
JOIN pgmodels.projects p ON p.id = m.project_id
WHERE pgmodels._may(pgmodels._me(), p.id, 'use');
COMMENT ON VIEW pgmodels.explainers IS 'per model version of the projects the current role may use: how its predictions are explained (kind, exact or approximate, method, what the contributions add up to) and its global importance per feature';
GRANT SELECT ON pgmodels.explainers TO PUBLIC;

-- explain_prediction() and explain_batch() work as predict() does (sql/040_serving.sql):
-- the wrappers are SQL functions that hand the features over as the caller (a row becomes
-- jsonb with the caller's rights: definer code never sees a type the caller defined), the
-- cores answer only from what pgmodels._explain_lookup loaded for this statement, and the
-- lookup (definer) checks the caller's explain privilege, which predict does not give:
-- contributions tell more of a model than its answers (a probe of each feature becomes one
-- call), so the owner grants it by name: grant_project(p, role, 'explain').

-- Loads a model and its explainer record into the backend's caches as the ones this
-- statement (or, with once, this call) explains with. Not for PUBLIC: only
-- _explain_lookup calls it, with what it read from the catalog.
CREATE OR REPLACE FUNCTION pgmodels._explain_load(project_name text, model_id bigint, stamp double precision,
                                                  model pgmodels.served_model, explainer bytea,
                                                  explainer_sha256 bytea, once boolean)
RETURNS boolean
LANGUAGE plpython3u STABLE PARALLEL SAFE
AS $$
if 'pgmodels.active' not in GD: return None  # _explain_lookup activates first
from pgmodels.explain.cache import load; return load(project_name, model_id, stamp, model, explainer, explainer_sha256, once)
$$;
COMMENT ON FUNCTION pgmodels._explain_load(text, bigint, double precision, pgmodels.served_model, bytea, bytea, boolean) IS 'internal: loads a model and its explainer record into the backend''s caches for this statement (or one call); called by _explain_lookup only';

-- Definer: the catalog is not readable by PUBLIC. Like _lookup it is the gate of the
-- cores; _lookup's master switch does not cover it (revoke this one too to turn
-- explaining off for all but the roles granted it).
CREATE OR REPLACE FUNCTION pgmodels._explain_lookup(project_name text, model_id bigint, credential text) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid;
    once boolean;
    loaded boolean;
    served pgmodels.served_model;
    digest bytea;
BEGIN
    IF project_name IS NULL OR model_id IS NULL THEN
        RETURN NULL;
    END IF;
    caller := pgmodels._verify_caller(credential);
    IF pgmodels._activate() IS NOT NULL THEN
        PERFORM pgmodels._raise_pending(NULL::integer);
    END IF;
    once := caller IS DISTINCT FROM (SELECT r.oid FROM pg_roles r WHERE r.rolname = coalesce(
                nullif(current_setting('role'), 'none'), session_user));
    served := pgmodels._resolve(project_name, model_id, caller, 'explain', false);
    SELECT x.record_sha256 INTO digest FROM pgmodels.model_explainers x WHERE x.model_id = served.id;
    IF digest IS NULL THEN
        RAISE EXCEPTION 'model % (version % of project "%") has no explainer', served.id, served.version, served.project
            USING ERRCODE = '55000',
                  DETAIL = CASE WHEN served.imported THEN 'It was imported, and nothing has given it one yet.'
                                WHEN served.task NOT IN ('classification', 'regression')
                                THEN format('Models of task %s are not explained.', served.task)
                                ELSE 'It was trained before pgmodels kept explainers, or its explainer could not be made (see its training record''s "explainer" entry).' END,
                  HINT = CASE WHEN served.imported
                              THEN format('Its owner can give it an approximate one from rows like the ones it scores: SELECT set_reference(%L, ''relation'', %s).', served.project, served.id)
                              ELSE 'Train the project again to get a version with an explainer.' END;
    END IF;
    loaded := pgmodels._explain_load(project_name, model_id, pgmodels._stamp(), served, NULL, digest, once);
    IF loaded IS NOT NULL AND NOT loaded THEN
        served := pgmodels._resolve(project_name, model_id, caller, 'explain', true);
        loaded := pgmodels._explain_load(project_name, model_id, pgmodels._stamp(), served,
                                         (SELECT x.record FROM pgmodels.model_explainers x WHERE x.model_id = served.id),
                                         digest, once);
    END IF;
    IF NOT coalesce(loaded, false) THEN
        PERFORM pgmodels._raise_pending(NULL::integer);
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION pgmodels._explain_lookup(text, bigint, text) IS 'internal: checks that the caller may explain with a project (model_id 0) or a model, and loads it and its explainer into the backend''s caches for this statement';

CREATE OR REPLACE FUNCTION pgmodels._explain_batch(project_name text, model_id bigint, numeric_features bytea,
                                                   "rows" jsonb, top_n integer, class_label text, stamp double precision,
                                                   loaded boolean)
RETURNS pgmodels.explanation LANGUAGE plpython3u STABLE PARALLEL SAFE
AS $$
if 'pgmodels.active' not in GD: return None  # the lookup activates first
from pgmodels.explain.serve import explain_batch; return explain_batch(project_name, model_id, numeric_features, rows, top_n, class_label, stamp, loaded)
$$;
COMMENT ON FUNCTION pgmodels._explain_batch(text, bigint, bytea, jsonb, integer, text, double precision, boolean) IS 'internal: the core of explain_batch(): rows as array_send(real[]) or a jsonb array';

-- The cores and the wrappers, for each way of naming the model (project name, model id)
-- and each features type predict() takes. The base comes first, then the features by
-- |contribution|; top_n keeps that many features and sums the rest as "(other)".
DO $do$
DECLARE
    core text;
    target record;
    ftype record;
BEGIN
    FOREACH core IN ARRAY ARRAY['float8[]', 'float4[]', 'jsonb'] LOOP
        EXECUTE format(
            'CREATE OR REPLACE FUNCTION pgmodels._explain(project_name text, model_id bigint, features %s, top_n integer, '
            'class_label text, stamp double precision, loaded boolean) RETURNS pgmodels.explanation '
            'LANGUAGE plpython3u STABLE PARALLEL SAFE AS %L', core,
            E'if \'pgmodels.active\' not in GD: return None  # the lookup activates first\n'
            'from pgmodels.explain.serve import explain_prediction; '
            'return explain_prediction(project_name, model_id, features, top_n, class_label, stamp, loaded)');
        EXECUTE format('COMMENT ON FUNCTION pgmodels._explain(text, bigint, %s, integer, text, double precision, boolean) IS %L',
                       core, 'internal: the core of explain_prediction()');
    END LOOP;
    FOR target IN SELECT * FROM (VALUES
        ('project_name text', '$1, 0', 'the deployed model of a project'),
        ('model_id bigint', '''''::text, $1', 'a model version chosen by id')) AS t(arg, pass, what)
    LOOP
        FOR ftype IN SELECT f.sqltype, f.cast_expr FROM pgmodels._feature_forms() f
        LOOP
            EXECUTE format(
                'CREATE OR REPLACE FUNCTION @extschema@.explain_prediction(%s, %s %s, top_n integer DEFAULT NULL, '
                'class text DEFAULT NULL) RETURNS TABLE (feature text, value text, contribution double precision) '
                'LANGUAGE sql STABLE PARALLEL SAFE ROWS 20 AS %L',
                target.arg, CASE WHEN ftype.sqltype = 'anyelement' THEN '"row"' ELSE 'features' END, ftype.sqltype,
                format('SELECT u.feature, u.value, u.contribution FROM (SELECT coalesce('
                       'pgmodels._explain(%1$s, %2$s, $3, $4, pgmodels._stamp(), NULL), '
                       'pgmodels._explain(%1$s, %2$s, $3, $4, pgmodels._stamp(), '
                       'pgmodels._explain_lookup(%1$s, pgmodels._credential())), '
                       'pgmodels._raise_pending(NULL::pgmodels.explanation)) AS e OFFSET 0) s, '
                       'ROWS FROM (pg_catalog.unnest((s.e).feature), pg_catalog.unnest((s.e).value), '
                       'pg_catalog.unnest((s.e).contribution)) WITH ORDINALITY '
                       'AS u(feature, value, contribution, n) ORDER BY u.n', target.pass, ftype.cast_expr));
            EXECUTE format('COMMENT ON FUNCTION @extschema@.explain_prediction(%s, %s, integer, text) IS %L',
                split_part(target.arg, ' ', 2), ftype.sqltype,
                format('why %s predicts what it does for features given as %s: each feature''s contribution to the '
                       'raw output (the margin of a class, or the value), the base first, by |contribution|; needs '
                       'the explain privilege', target.what,
                       CASE ftype.sqltype WHEN 'anyelement' THEN 'a row'
                                          WHEN 'jsonb' THEN 'a jsonb object' ELSE 'an array in feature order' END));
        END LOOP;
        FOR ftype IN SELECT * FROM (VALUES
            ('real[]', 'pg_catalog.array_send($2), NULL::jsonb'),
            ('anyarray', 'NULL::bytea, pg_catalog.to_jsonb($2)')) AS f(sqltype, pass)
        LOOP
            EXECUTE format(
                'CREATE OR REPLACE FUNCTION @extschema@.explain_batch(%s, %s %s, top_n integer DEFAULT NULL, '
                'class text DEFAULT NULL) RETURNS TABLE (row_number integer, feature text, value text, '
                'contribution double precision) LANGUAGE sql STABLE PARALLEL SAFE ROWS 1000 AS %L',
                target.arg, CASE WHEN ftype.sqltype = 'anyarray' THEN '"rows"' ELSE 'features' END, ftype.sqltype,
                format('SELECT u.row_number, u.feature, u.value, u.contribution FROM (SELECT coalesce('
                       'pgmodels._explain_batch(%1$s, %2$s, $3, $4, pgmodels._stamp(), NULL), '
                       'pgmodels._explain_batch(%1$s, %2$s, $3, $4, pgmodels._stamp(), '
                       'pgmodels._explain_lookup(%1$s, pgmodels._credential())), '
                       'pgmodels._raise_pending(NULL::pgmodels.explanation)) AS e OFFSET 0) s, '
                       'ROWS FROM (pg_catalog.unnest((s.e).row_number), pg_catalog.unnest((s.e).feature), '
                       'pg_catalog.unnest((s.e).value), pg_catalog.unnest((s.e).contribution)) WITH ORDINALITY AS u(row_number, feature, value, contribution, n) ORDER BY u.n',
                       target.pass, ftype.pass));
            EXECUTE format('COMMENT ON FUNCTION @extschema@.explain_batch(%s, %s, integer, text) IS %L',
                split_part(target.arg, ' ', 2), ftype.sqltype,
                format('explanations of many rows in one model run, for %s: rows given as %s; per row the base '
                       'first, then the features by |contribution|; needs the explain privilege', target.what,
                       CASE ftype.sqltype WHEN 'real[]' THEN 'a real[] (flat, or rows x features)'
                            ELSE 'an array of rows (array_agg(t)), of jsonb objects, or of numbers' END));
        END LOOP;
    END LOOP;
END
$do$;

-- The contributions output of stream consumers: add_consumer() with outputs. Prediction,
-- probabilities and label are always written; 'contributions' adds a jsonb column
-- (feature -> contribution, the base as "(base)") to the output table, and a consumer whose
-- output table has it writes them with each prediction (python_udfs/pgmodels/stream/
-- process.py). Its core checks EXECUTE on add_consumer(text, ..., integer), which an
-- administrator grants, and the explain privilege: so this form needs no grant of its own.
CREATE OR REPLACE FUNCTION pgmodels._add_consumer_outputs(stream_name text, consumer_name text, project_name text,
    outputs text[], output_table text, enrich_relation text, enrich_key text, from_beginning boolean,
    partitions integer)
RETURNS bigint LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.stream.consumers import add_with_outputs; return add_with_outputs(stream_name, consumer_name, project_name, outputs, output_table, enrich_relation, enrich_key, from_beginning, partitions)
$$;
COMMENT ON FUNCTION pgmodels._add_consumer_outputs(text, text, text, text[], text, text, text, boolean, integer) IS 'internal: the core of add_consumer(..., outputs), run as the caller';

CREATE OR REPLACE FUNCTION @extschema@.add_consumer(stream_name text, consumer_name text, project_name text,
    outputs text[], output_table text DEFAULT NULL, enrich_relation text DEFAULT NULL, enrich_key text DEFAULT NULL,
    from_beginning boolean DEFAULT false, partitions integer DEFAULT 1)
RETURNS bigint LANGUAGE sql VOLATILE
AS $$
    SELECT coalesce(pgmodels._add_consumer_outputs($1, $2, $3, $4, $5, $6, $7, $8, $9),
                    pgmodels._raise_pending(NULL::bigint))
$$;
COMMENT ON FUNCTION @extschema@.add_consumer(text, text, text, text[], text, text, text, boolean, integer) IS 'add_consumer() with the outputs it writes: prediction, probabilities and label always, and contributions (per prediction, feature -> contribution; needs the explain privilege); for the roles that may execute add_consumer()';

-- Grants of this area. Functions are created executable by PUBLIC (sql/090_grants.sql ran
-- before this file); internal ones are not, but for those listed here, each safe to call.
REVOKE EXECUTE ON FUNCTION
    pgmodels._take_staged_explainer(text),
    pgmodels._store_explainer(text),
    pgmodels._explain_load(text, bigint, double precision, pgmodels.served_model, bytea, bytea, boolean),
    pgmodels._explain_lookup(text, bigint, text),
    pgmodels._explain(text, bigint, double precision[], integer, text, double precision, boolean),
    pgmodels._explain(text, bigint, real[], integer, text, double precision, boolean),
    pgmodels._explain(text, bigint, jsonb, integer, text, double precision, boolean),
    pgmodels._explain_batch(text, bigint, bytea, jsonb, integer, text, double precision, boolean),
    pgmodels._add_consumer_outputs(text, text, text, text[], text, text, text, boolean, integer)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    -- train() calls it as the caller: it stores only a record this backend just staged, for
    -- a model of a project the staging role owns
    pgmodels._store_explainer(text),
    -- the gate: it checks the caller's credential and explain privilege itself
    pgmodels._explain_lookup(text, bigint, text),
    -- the cores the explain wrappers call as the caller: they answer only from what
    -- _explain_lookup loaded for this statement, and take no model from the caller
    pgmodels._explain(text, bigint, double precision[], integer, text, double precision, boolean),
    pgmodels._explain(text, bigint, real[], integer, text, double precision, boolean),
    pgmodels._explain(text, bigint, jsonb, integer, text, double precision, boolean),
    pgmodels._explain_batch(text, bigint, bytea, jsonb, integer, text, double precision, boolean),
    -- add_consumer(..., outputs)'s core, run as the caller: it checks EXECUTE on
    -- add_consumer() and the explain privilege itself
    pgmodels._add_consumer_outputs(text, text, text, text[], text, text, text, boolean, integer)
TO PUBLIC;
