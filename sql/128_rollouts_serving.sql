-- Rollouts in the scoring path: predict(), predict_proba() and predict_label() with a
-- routing key, the block scorer with keys, the writer of the answers a rollout records,
-- and rollout_version(). How a statement is routed: sql/127_rollouts.sql.

-- The keyed cores and wrappers: predict(project, features, key => customer_id) answers a
-- key by the version the project's rollout assigns it (rollout_version tells which),
-- and records the answer for the rollout's report. The key is converted to text in the
-- caller's own statement (its own type's output function, with its own rights).
DO $do$
DECLARE
    answer record;
    ftype record;
    core text;
BEGIN
    FOR answer IN SELECT * FROM (VALUES
        ('predict', 'real', 'the prediction'),
        ('predict_proba', 'real[]', 'the class probabilities'),
        ('predict_label', 'text', 'the predicted class label')) AS a(name, rettype, what)
    LOOP
        FOREACH core IN ARRAY ARRAY['float8[]', 'float4[]', 'jsonb'] LOOP
            EXECUTE format(
                'CREATE OR REPLACE FUNCTION pgmodels.%I(project_name text, model_id bigint, features %s, stamp double precision, '
                'loaded boolean, key text) RETURNS %s LANGUAGE plpython3u STABLE PARALLEL SAFE AS %L',
                '_' || answer.name, core, answer.rettype,
                format(E'if \'pgmodels.active\' not in GD: return None\n'
                       || E'from pgmodels.serving.predict import %1$s_key as f; return f(project_name, model_id, features, stamp, loaded, key)',
                       answer.name));
            EXECUTE format('COMMENT ON FUNCTION pgmodels.%I(text, bigint, %s, double precision, boolean, text) IS %L',
                '_' || answer.name, core, format('internal: the core of %s() with a routing key', answer.name));
        END LOOP;
        FOR ftype IN SELECT f.sqltype, f.cast_expr FROM pgmodels._feature_forms() f
        LOOP
            EXECUTE format(
                'CREATE OR REPLACE FUNCTION @extschema@.%I(project_name text, %s %s, key anycompatible) RETURNS %s '
                'LANGUAGE sql STABLE PARALLEL SAFE AS %L',
                answer.name, CASE WHEN ftype.sqltype = 'anyelement' THEN '"row"' ELSE 'features' END,
                ftype.sqltype, answer.rettype,
                format('SELECT coalesce(pgmodels.%1$I($1, 0, %2$s, pgmodels._stamp(), NULL, $3::text), '
                       'pgmodels.%1$I($1, 0, %2$s, pgmodels._stamp(), pgmodels._lookup($1, 0, pgmodels._credential()), $3::text), '
                       'pgmodels._raise_pending(NULL::%3$s))',
                       '_' || answer.name, ftype.cast_expr, answer.rettype));
            EXECUTE format('COMMENT ON FUNCTION @extschema@.%I(text, %s, anycompatible) IS %L',
                answer.name, ftype.sqltype,
                format('%s for the deployed model of a project, or for the version its rollout assigns the key (a customer id, say: see rollout_version), from features given as %s',
                       answer.what,
                       CASE ftype.sqltype WHEN 'anyelement' THEN 'a row'
                                          WHEN 'jsonb' THEN 'a jsonb object keyed by feature name'
                                          ELSE 'an array in feature order' END));
        END LOOP;
    END LOOP;
END
$do$;

-- A block of rows with a routing key per row (NULL: drawn at random), and the mode that
-- scores it (batch, stream, proxy or sql), which the rollout's records name.
CREATE OR REPLACE FUNCTION pgmodels._score_rows(project_name text, model_id bigint, numeric_features bytea,
                                                text_features text[], outputs text[], stamp double precision,
                                                loaded boolean, keys text[], source text)
RETURNS pgmodels.scored_rows LANGUAGE plpython3u STABLE PARALLEL SAFE
AS $$
if 'pgmodels.active' not in GD: return None  # _lookup activates first: without it no model is loaded to answer
from pgmodels.serving.predict import score_rows; return score_rows(project_name, model_id, numeric_features, text_features, outputs, stamp, loaded, keys, source)
$$;
COMMENT ON FUNCTION pgmodels._score_rows(text, bigint, bytea, text[], text[], double precision, boolean, text[], text) IS 'internal: scores a block of rows in one model run, routed by the statement''s rollout with one key per row (keys), recording for source (batch, stream, proxy, sql)';

-- Writes the answers this backend's scoring code recorded (python_udfs/pgmodels/rollout/
-- record.py). Definer: rollout_predictions is not writable by PUBLIC. It takes nothing
-- from its caller: it writes what pgmodels' own code in this backend put aside, which no
-- role can forge (PL/Python is untrusted). Open to PUBLIC: calling it only writes early.
CREATE OR REPLACE FUNCTION pgmodels._rollout_flush() RETURNS bigint
LANGUAGE plpython3u VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
if 'pgmodels.active' not in GD: return 0  # nothing was scored in this backend
from pgmodels.rollout.record import write; return write()
$$;
COMMENT ON FUNCTION pgmodels._rollout_flush() IS 'internal: writes the rollout answers this backend recorded to pgmodels.rollout_predictions (takes no argument: nothing a caller hands it is written)';

-- A key's place in [0, 1) for a rollout: the first 52 bits of sha256('<id>:<key>') over
-- 2^52, as python_udfs/pgmodels/rollout/route.py computes it.
CREATE OR REPLACE FUNCTION pgmodels._rollout_share(rollout_id bigint, key text) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT ('x' OPERATOR(pg_catalog.||) pg_catalog.left(pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(
               $1::text OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) $2, 'UTF8')), 'hex'), 13))::bit(52)::bigint
           OPERATOR(pg_catalog./) 4503599627370496.0::double precision
$$;
COMMENT ON FUNCTION pgmodels._rollout_share(bigint, text) IS 'internal: a key''s share in [0, 1) for a rollout: the first 52 bits of sha256(''<rollout id>:<key>'') over 2^52; a canary''s candidate answers the keys below its fraction';

-- Which version answers a key: for roles that may predict with the project.
CREATE OR REPLACE FUNCTION pgmodels._rollout_version(credential text, project_name text, key text,
                                                     OUT model_id bigint, OUT version integer, OUT role text,
                                                     OUT rollout_id bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    served pgmodels.served_model := pgmodels._resolve(project_name, 0, caller, 'predict', false);
    ro pgmodels.rollout_runs;
    s double precision;
BEGIN
    model_id := served.id;
    version := served.version;
    role := 'champion';
    SELECT r.* INTO ro FROM pgmodels.rollout_runs r JOIN pgmodels.projects p ON p.id = r.project_id
     WHERE p.name = project_name AND r.status = 'active';
    IF ro.id IS NULL THEN
        RETURN;
    END IF;
    rollout_id := ro.id;
    IF ro.mode = 'shadow' THEN
        role := 'champion (shadowed)';
        RETURN;
    END IF;
    IF key IS NULL THEN
        role := 'random';  -- a row without a key is drawn at random
        model_id := NULL;
        version := NULL;
        RETURN;
    END IF;
    s := pgmodels._rollout_share(ro.id, key);
    IF s < ro.fraction THEN
        SELECT m.id, m.version INTO model_id, version FROM pgmodels.models m WHERE m.id = ro.candidate_id;
        role := 'canary';
    ELSIF s < 2 * ro.fraction OR ro.fraction >= 0.5 THEN
        role := 'control';
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._rollout_version(text, text, text) IS 'internal: the core of rollout_version() (definer: the catalog is not readable by PUBLIC), for roles that may predict with the project';

CREATE OR REPLACE FUNCTION @extschema@.rollout_version(project_name text, key anycompatible,
                                                       OUT model_id bigint, OUT version integer, OUT role text,
                                                       OUT rollout_id bigint)
LANGUAGE sql STABLE
AS $$ SELECT * FROM pgmodels._rollout_version(pgmodels._credential(), $1, $2::text) $$;
COMMENT ON FUNCTION @extschema@.rollout_version(text, anycompatible) IS 'the model version that answers a key (a customer id, say) of a project: the deployed one (champion, or control: its answers are the canary''s comparison) or a canary''s candidate; the same in SQL, batch jobs, streams and pgmodels serve';

-- Grants of this area. Functions are created executable by PUBLIC (sql/090_grants.sql ran
-- before this file); internal ones are not, but for those listed here, each safe to call.
REVOKE EXECUTE ON FUNCTION
    pgmodels._predict(text, bigint, double precision[], double precision, boolean, text),
    pgmodels._predict(text, bigint, real[], double precision, boolean, text),
    pgmodels._predict(text, bigint, jsonb, double precision, boolean, text),
    pgmodels._predict_proba(text, bigint, double precision[], double precision, boolean, text),
    pgmodels._predict_proba(text, bigint, real[], double precision, boolean, text),
    pgmodels._predict_proba(text, bigint, jsonb, double precision, boolean, text),
    pgmodels._predict_label(text, bigint, double precision[], double precision, boolean, text),
    pgmodels._predict_label(text, bigint, real[], double precision, boolean, text),
    pgmodels._predict_label(text, bigint, jsonb, double precision, boolean, text),
    pgmodels._score_rows(text, bigint, bytea, text[], text[], double precision, boolean, text[], text),
    pgmodels._rollout_flush(),
    pgmodels._rollout_share(bigint, text),
    pgmodels._rollout_version(text, text, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    -- the keyed cores the inlined wrappers call as the caller: they answer only from
    -- models _lookup loaded for this statement, and take no model from the caller
    pgmodels._predict(text, bigint, double precision[], double precision, boolean, text),
    pgmodels._predict(text, bigint, real[], double precision, boolean, text),
    pgmodels._predict(text, bigint, jsonb, double precision, boolean, text),
    pgmodels._predict_proba(text, bigint, double precision[], double precision, boolean, text),
    pgmodels._predict_proba(text, bigint, real[], double precision, boolean, text),
    pgmodels._predict_proba(text, bigint, jsonb, double precision, boolean, text),
    pgmodels._predict_label(text, bigint, double precision[], double precision, boolean, text),
    pgmodels._predict_label(text, bigint, real[], double precision, boolean, text),
    pgmodels._predict_label(text, bigint, jsonb, double precision, boolean, text),
    -- the block core: like the others, it answers only from models _lookup loaded
    pgmodels._score_rows(text, bigint, bytea, text[], text[], double precision, boolean, text[], text),
    -- writes only what this backend's scoring code recorded
    pgmodels._rollout_flush(),
    -- arithmetic
    pgmodels._rollout_share(bigint, text),
    -- checks the caller's credential and predict privilege
    pgmodels._rollout_version(text, text, text)
TO PUBLIC;
