-- Edge deployment: the served model as a signed bundle for devices and browsers.
--
-- export_bundle() returns a zip archive of manifest.json, model.onnx and manifest.sig:
-- the artifact the model serves from (with ZipMap outputs turned into plain tensors, the
-- only change ever made), a manifest describing it (features, inputs, outputs, labels,
-- metrics, opset, the sha256 of model.onnx) and the Ed25519 signature of the manifest's
-- bytes by the server's signing key. Devices pin the public key (edge_public_key()).
--
-- The signing key lives in pgmodels.edge_signing_key, one row, made on first use from the
-- operating system's randomness. No role but the extension's owner (a superuser) may
-- read it: PUBLIC has no privilege on the table, and the only functions that touch it are
-- definer functions that sign nothing but a manifest they built from the catalog after
-- checking the caller's export privilege. pg_dump keeps it (pg_extension_config_dump),
-- so a restored database signs with the same key and pinned devices keep working; a
-- dump is therefore as secret as the key. Rotating it: a superuser deletes the row, and
-- the next export makes a new key (devices must then pin the new public key).

CREATE OR REPLACE FUNCTION pgmodels._edge_new_key() RETURNS TABLE (seed bytea, public_key bytea)
LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return []
from pgmodels.edge.build import new_key; return new_key()
$$;
COMMENT ON FUNCTION pgmodels._edge_new_key() IS 'internal: a fresh Ed25519 key (seed and public key) from os.urandom; only _edge_key calls it';

-- Definer: the key table is the owner's alone. Makes the key on first use (concurrent
-- first calls agree on one row: ON CONFLICT keeps the first).
CREATE OR REPLACE FUNCTION pgmodels._edge_key() RETURNS pgmodels.edge_signing_key
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k pgmodels.edge_signing_key;
BEGIN
    SELECT * INTO k FROM pgmodels.edge_signing_key WHERE id = 1;
    IF k.id IS NULL THEN
        INSERT INTO pgmodels.edge_signing_key (id, seed, public_key)
        SELECT 1, n.seed, n.public_key FROM pgmodels._edge_new_key() n
        ON CONFLICT (id) DO NOTHING;
        PERFORM pgmodels._raise_pending(NULL::integer);
        SELECT * INTO k FROM pgmodels.edge_signing_key WHERE id = 1;
    END IF;
    RETURN k;
END
$$;
COMMENT ON FUNCTION pgmodels._edge_key() IS 'internal: the signing key, made on first use; not for PUBLIC';

-- Definer: reads the key's public half only.
CREATE OR REPLACE FUNCTION @extschema@.edge_public_key() RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RETURN encode((pgmodels._edge_key()).public_key, 'hex'); END $$;
COMMENT ON FUNCTION @extschema@.edge_public_key() IS 'the public half of the Ed25519 key that signs edge bundles, as 64 hex digits, for devices to pin (makes the key on first use)';

CREATE OR REPLACE FUNCTION pgmodels._edge_build(served pgmodels.served_model, metrics jsonb, trained_at text,
                                                seed bytea, option text, check_rows jsonb, deployment bigint)
RETURNS bytea
LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.edge.build import edge_build; return edge_build(served, metrics, trained_at, seed, option, check_rows, deployment)
$$;
COMMENT ON FUNCTION pgmodels._edge_build(pgmodels.served_model, jsonb, text, bytea, text, jsonb, bigint) IS 'internal: builds and signs the bundle of a resolved model (with the deployment that made it current, for the deployed one), with a size option checked on the check rows; only _export_bundle calls it';

CREATE OR REPLACE FUNCTION pgmodels._edge_options_report(served pgmodels.served_model, check_rows jsonb) RETURNS text
LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.edge.build import edge_options; return edge_options(served, check_rows)
$$;
COMMENT ON FUNCTION pgmodels._edge_options_report(pgmodels.served_model, jsonb) IS 'internal: each size option''s size and prediction difference on the check rows; only _edge_options calls it';

-- Definer: it reads the catalog and the signing key; the caller's credential says who
-- is asking, and the export privilege decides (as for export_onnx). check_rows are the
-- caller's (read by the invoker wrapper with the caller's own rights): they only decide
-- whether a size option is refused.
CREATE OR REPLACE FUNCTION pgmodels._export_bundle(project_name text, model_id bigint, option text, check_rows jsonb,
                                                   credential text)
RETURNS bytea
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    artifact bytea;
    served pgmodels.served_model;
    m pgmodels.models;
    bundle bytea;
    deployment bigint;
    chosen bigint := model_id;
BEGIN
    IF project_name IS NULL THEN
        RETURN NULL;
    END IF;
    -- The deployed model: the newest deployment, read once, so that the bundle and the
    -- deployment number it carries agree. Devices refuse a bundle whose number is lower
    -- than the one they run (an older bundle replayed), and a deploy or a rollback makes
    -- a new, higher one. Only the plain bundle (what serve serves) is numbered: a size
    -- option's variant, checked on rows the caller chooses, is not offered as the same
    -- deployment. Nothing is said before the checks below.
    IF model_id IS NULL THEN
        SELECT CASE WHEN option IS NULL THEN d.id END, d.model_id INTO deployment, chosen
          FROM pgmodels.deployments d JOIN pgmodels.projects p ON p.id = d.project_id
         WHERE p.name = project_name ORDER BY d.id DESC LIMIT 1;
    END IF;
    -- every check of export_onnx: privilege, master switch, project, runtime, sha256
    artifact := pgmodels._export(project_name, chosen, credential);
    served := pgmodels._resolve(project_name, coalesce(chosen, 0), pgmodels._verify_caller(credential), 'export');
    SELECT * INTO m FROM pgmodels.models WHERE id = served.id;
    bundle := pgmodels._edge_build(served, m.metrics, to_char(m.trained_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                                   (pgmodels._edge_key()).seed, option, check_rows, deployment);
    IF bundle IS NULL THEN
        PERFORM pgmodels._raise_pending(NULL::integer);
    END IF;
    RETURN bundle;
END
$$;
COMMENT ON FUNCTION pgmodels._export_bundle(text, bigint, text, jsonb, text) IS 'internal: the core of export_bundle(): the checks of export_onnx(), then the signed bundle';

CREATE OR REPLACE FUNCTION @extschema@.export_bundle(project_name text, model_id bigint DEFAULT NULL) RETURNS bytea
LANGUAGE sql VOLATILE
AS $$ SELECT pgmodels._export_bundle($1, $2, NULL, NULL, pgmodels._credential()) $$;
COMMENT ON FUNCTION @extschema@.export_bundle(text, bigint) IS 'a signed edge bundle (zip: manifest.json, model.onnx, manifest.sig) of the deployed model or the given model id, for devices; needs the export privilege on its project';

-- The rows a size option is checked on, read as the caller (an invoker function: the
-- caller's privileges and row-level security apply), at most 100,000.
CREATE OR REPLACE FUNCTION pgmodels._check_rows(check_relation regclass) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    rows jsonb;
BEGIN
    IF check_relation IS NULL THEN
        RAISE EXCEPTION 'a size option needs check rows' USING ERRCODE = '22004',
            HINT = 'Pass the model''s test split (or rows you trust) as check_relation.';
    END IF;
    EXECUTE format('SELECT jsonb_agg(to_jsonb(t)) FROM (SELECT * FROM %s LIMIT 100000) t', check_relation) INTO rows;
    RETURN coalesce(rows, '[]'::jsonb);
END
$$;
COMMENT ON FUNCTION pgmodels._check_rows(regclass) IS 'internal: a relation''s rows as jsonb, read with the caller''s rights, for checking a size option';

CREATE OR REPLACE FUNCTION @extschema@.export_bundle(project_name text, model_id bigint, size_option text,
                                                     check_relation regclass) RETURNS bytea
LANGUAGE sql VOLATILE
AS $$ SELECT pgmodels._export_bundle($1, $2, $3, CASE WHEN $3 IS NOT NULL THEN pgmodels._check_rows($4) END,
                                      pgmodels._credential()) $$;
COMMENT ON FUNCTION @extschema@.export_bundle(text, bigint, text, regclass) IS 'a signed edge bundle made smaller by a size option (ort, float16 or int8), refused when it changes any class on the check relation''s rows (a NULL option: the plain bundle); needs the export privilege';

-- Definer: reads the catalog; the export privilege decides.
CREATE OR REPLACE FUNCTION pgmodels._edge_options(project_name text, model_id bigint, check_rows jsonb, credential text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    served pgmodels.served_model;
    report text;
BEGIN
    PERFORM pgmodels._export(project_name, model_id, credential);
    served := pgmodels._resolve(project_name, coalesce(model_id, 0), pgmodels._verify_caller(credential), 'export');
    report := pgmodels._edge_options_report(served, check_rows);
    IF report IS NULL THEN
        PERFORM pgmodels._raise_pending(NULL::integer);
    END IF;
    RETURN report::jsonb;
END
$$;
COMMENT ON FUNCTION pgmodels._edge_options(text, bigint, jsonb, text) IS 'internal: the core of edge_bundle_options()';

CREATE OR REPLACE FUNCTION @extschema@.edge_bundle_options(project_name text, check_relation regclass,
                                                           model_id bigint DEFAULT NULL)
RETURNS TABLE (size_option text, bytes integer, bytes_before integer, max_abs_diff double precision,
               classes_changed integer, check_rows integer, usable boolean, note text)
LANGUAGE sql VOLATILE
AS $$
    SELECT r->>'option', (r->>'bytes')::integer, (r->>'bytes_before')::integer, (r->>'max_abs_diff')::float8,
           (r->>'classes_changed')::integer, (r->>'rows')::integer, (r->>'usable')::boolean, r->>'note'
    FROM jsonb_array_elements(pgmodels._edge_options($1, $3, pgmodels._check_rows($2), pgmodels._credential())) r
$$;
COMMENT ON FUNCTION @extschema@.edge_bundle_options(text, regclass, bigint) IS 'what each size option (ort, float16, int8) would make of a model''s bundle: bytes before and after, the largest prediction difference and the classes changed on the check relation''s rows; needs the export privilege';

-- What a device polling for updates needs to know, cheaply: the deployed model, its
-- artifact's sha256 and the signing key's id (a rotated key changes it), for a role with
-- the export privilege. Definer: reads the catalog and the key's public half.
CREATE OR REPLACE FUNCTION pgmodels._edge_current(project_name text, credential text)
RETURNS TABLE (model_id bigint, version integer, artifact_sha256 text, key_id text, deployment bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    served pgmodels.served_model;
BEGIN
    IF NOT has_function_privilege(caller, 'pgmodels._lookup(text, bigint, text)', 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for function _lookup' USING ERRCODE = '42501',
            DETAIL = 'The administrator has turned predicting and exporting off for this role.';
    END IF;
    served := pgmodels._resolve(project_name, 0, caller, 'export', false);
    RETURN QUERY SELECT served.id, served.version, encode(served.artifact_sha256, 'hex'),
        (SELECT left(encode(sha256(k.public_key), 'hex'), 16) FROM pgmodels.edge_signing_key k WHERE k.id = 1),
        (SELECT max(d.id) FROM pgmodels.deployments d JOIN pgmodels.projects p ON p.id = d.project_id
          WHERE p.name = project_name);
END
$$;
COMMENT ON FUNCTION pgmodels._edge_current(text, text) IS 'internal: the deployed model id, version, served artifact sha256, signing key id and deployment number of a project, for a role with the export privilege (pgmodels serve''s bundle cache key)';

-- Edge devices under a canary rollout (sql/127_rollouts.sql): a device that names itself
-- (pgmodels serve's bundle route, ?device_id=) is handed the candidate's bundle when its
-- share of the rollout, pgmodels._rollout_share(rollout id, device id) (the hash every
-- mode routes keys by), is below the fraction, and the deployed model's otherwise, in
-- shadow, or when the deployed model is no longer the rollout's champion. Both carry the
-- number of the deployment the rollout runs on: a canary device takes the candidate's
-- bundle and, after an abort, the champion's again (the same number, which devices
-- accept); a promote is a new deployment and reaches every device. The owner reads the
-- catalog: only the definer cores below call it.
CREATE OR REPLACE FUNCTION pgmodels._edge_assigned(project_name text, device text, OUT model_id bigint,
                                                   OUT deployment bigint, OUT rollout_id bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    candidate bigint;
BEGIN
    SELECT d.model_id, d.id INTO model_id, deployment
      FROM pgmodels.deployments d JOIN pgmodels.projects p ON p.id = d.project_id
     WHERE p.name = project_name ORDER BY d.id DESC LIMIT 1;
    IF device IS NULL OR model_id IS NULL THEN
        RETURN;
    END IF;
    SELECT r.id, r.candidate_id INTO rollout_id, candidate
      FROM pgmodels.rollout_runs r JOIN pgmodels.projects p ON p.id = r.project_id
     WHERE p.name = project_name AND r.status = 'active' AND r.mode = 'canary'
       AND r.champion_id = _edge_assigned.model_id
       AND pgmodels._rollout_share(r.id, device) < r.fraction;
    IF rollout_id IS NOT NULL THEN
        model_id := candidate;
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._edge_assigned(text, text) IS 'internal: the model a device gets (the canary candidate for the devices whose share of the project''s active canary rollout is below its fraction, else the deployed one), the deployment number its bundle carries, and the rollout that chose the candidate (NULL otherwise)';

-- _edge_current for a device: what its bundle would be, for a role with the export
-- privilege. Definer: reads the catalog.
CREATE OR REPLACE FUNCTION pgmodels._edge_current(project_name text, credential text, device text)
RETURNS TABLE (model_id bigint, version integer, artifact_sha256 text, key_id text, deployment bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
    caller oid;
    served pgmodels.served_model;
BEGIN
    SELECT * INTO a FROM pgmodels._edge_assigned(project_name, device);
    IF a.rollout_id IS NULL THEN
        RETURN QUERY SELECT * FROM pgmodels._edge_current(project_name, credential);
        RETURN;
    END IF;
    caller := pgmodels._verify_caller(credential);
    IF NOT has_function_privilege(caller, 'pgmodels._lookup(text, bigint, text)', 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for function _lookup' USING ERRCODE = '42501',
            DETAIL = 'The administrator has turned predicting and exporting off for this role.';
    END IF;
    served := pgmodels._resolve(project_name, a.model_id, caller, 'export', false);
    RETURN QUERY SELECT served.id, served.version, encode(served.artifact_sha256, 'hex'),
        (SELECT left(encode(sha256(k.public_key), 'hex'), 16) FROM pgmodels.edge_signing_key k WHERE k.id = 1),
        a.deployment;
END
$$;
COMMENT ON FUNCTION pgmodels._edge_current(text, text, text) IS 'internal: _edge_current for a device id: the canary candidate''s model id, version, sha256, key id and the deployment number while the device is in the project''s canary share, else the deployed model''s (pgmodels serve''s bundle cache key)';

-- The bundle for a device: the canary candidate's, signed and numbered with the
-- deployment the rollout runs on, for a device in the canary share; the deployed model's
-- (export_bundle's) otherwise. Definer: as _export_bundle, whose checks it makes.
CREATE OR REPLACE FUNCTION pgmodels._export_device_bundle(project_name text, device text, credential text)
RETURNS bytea
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
    artifact bytea;
    served pgmodels.served_model;
    m pgmodels.models;
    bundle bytea;
BEGIN
    IF project_name IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT * INTO a FROM pgmodels._edge_assigned(project_name, device);
    IF a.rollout_id IS NULL THEN
        RETURN pgmodels._export_bundle(project_name, NULL, NULL, NULL, credential);
    END IF;
    -- every check of export_onnx: privilege, master switch, project, runtime, sha256
    artifact := pgmodels._export(project_name, a.model_id, credential);
    served := pgmodels._resolve(project_name, a.model_id, pgmodels._verify_caller(credential), 'export');
    SELECT * INTO m FROM pgmodels.models WHERE id = served.id;
    bundle := pgmodels._edge_build(served, m.metrics, to_char(m.trained_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                                   (pgmodels._edge_key()).seed, NULL, NULL, a.deployment);
    IF bundle IS NULL THEN
        PERFORM pgmodels._raise_pending(NULL::integer);
    END IF;
    RETURN bundle;
END
$$;
COMMENT ON FUNCTION pgmodels._export_device_bundle(text, text, text) IS 'internal: the signed bundle pgmodels serve hands a device: the canary candidate''s (numbered with the deployment the rollout runs on) for a device in the project''s canary share, else the deployed model''s; the checks of export_bundle()';

-- Grants. PUBLIC keeps: the user-facing functions above (export_bundle and
-- edge_bundle_options check the export privilege themselves; edge_public_key gives out
-- the public half only), _check_rows (an invoker function: the caller's own rights), and
-- the definer cores, which check the caller's credential and privilege themselves. Never
-- PUBLIC: _edge_key (the private key), _edge_new_key, _edge_build (it signs what it is
-- given) and _edge_options_report: only definer functions call them.
REVOKE EXECUTE ON FUNCTION
    pgmodels._edge_new_key(),
    pgmodels._edge_key(),
    pgmodels._edge_build(pgmodels.served_model, jsonb, text, bytea, text, jsonb, bigint),
    pgmodels._edge_options_report(pgmodels.served_model, jsonb),
    pgmodels._export_bundle(text, bigint, text, jsonb, text),
    pgmodels._edge_options(text, bigint, jsonb, text),
    pgmodels._check_rows(regclass),
    pgmodels._edge_current(text, text),
    pgmodels._edge_assigned(text, text),
    pgmodels._edge_current(text, text, text),
    pgmodels._export_device_bundle(text, text, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    -- check the caller's credential and export privilege themselves
    pgmodels._export_bundle(text, bigint, text, jsonb, text),
    pgmodels._edge_options(text, bigint, jsonb, text),
    pgmodels._edge_current(text, text),
    pgmodels._edge_current(text, text, text),
    pgmodels._export_device_bundle(text, text, text),
    -- reads a relation with the caller's own rights
    pgmodels._check_rows(regclass)
TO PUBLIC;
