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

CREATE TABLE pgmodels.edge_signing_key (
    id          integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    seed        bytea NOT NULL CHECK (length(seed) = 32),
    public_key  bytea NOT NULL CHECK (length(public_key) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgmodels.edge_signing_key IS 'the Ed25519 key that signs edge bundles (one row, made on first use); readable by superusers only';
REVOKE ALL ON pgmodels.edge_signing_key FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pgmodels.edge_signing_key', '');

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
                                                seed bytea) RETURNS bytea
LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.edge.build import edge_build; return edge_build(served, metrics, trained_at, seed)
$$;
COMMENT ON FUNCTION pgmodels._edge_build(pgmodels.served_model, jsonb, text, bytea) IS 'internal: builds and signs the bundle of a resolved model; only _export_bundle calls it';

-- Definer: it reads the catalog and the signing key; the caller's credential says who
-- is asking, and the export privilege decides (as for export_onnx).
CREATE OR REPLACE FUNCTION pgmodels._export_bundle(project_name text, model_id bigint, credential text)
RETURNS bytea
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    artifact bytea;
    served pgmodels.served_model;
    m pgmodels.models;
    bundle bytea;
BEGIN
    IF project_name IS NULL THEN
        RETURN NULL;
    END IF;
    -- every check of export_onnx: privilege, master switch, project, runtime, sha256
    artifact := pgmodels._export(project_name, model_id, credential);
    served := pgmodels._resolve(project_name, coalesce(model_id, 0), pgmodels._verify_caller(credential), 'export');
    SELECT * INTO m FROM pgmodels.models WHERE id = served.id;
    bundle := pgmodels._edge_build(served, m.metrics, to_char(m.trained_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                                   (pgmodels._edge_key()).seed);
    IF bundle IS NULL THEN
        PERFORM pgmodels._raise_pending(NULL::integer);
    END IF;
    RETURN bundle;
END
$$;
COMMENT ON FUNCTION pgmodels._export_bundle(text, bigint, text) IS 'internal: the core of export_bundle(): the checks of export_onnx(), then the signed bundle';

CREATE OR REPLACE FUNCTION @extschema@.export_bundle(project_name text, model_id bigint DEFAULT NULL) RETURNS bytea
LANGUAGE sql VOLATILE
AS $$ SELECT pgmodels._export_bundle($1, $2, pgmodels._credential()) $$;
COMMENT ON FUNCTION @extschema@.export_bundle(text, bigint) IS 'a signed edge bundle (zip: manifest.json, model.onnx, manifest.sig) of the deployed model or the given model id, for devices; needs the export privilege on its project';

-- What a device polling for updates needs to know, cheaply: the deployed model and its
-- artifact's sha256, for a role with the export privilege. Definer: reads the catalog.
CREATE OR REPLACE FUNCTION pgmodels._edge_current(project_name text, credential text)
RETURNS TABLE (model_id bigint, version integer, artifact_sha256 text)
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
    RETURN QUERY SELECT served.id, served.version, encode(served.artifact_sha256, 'hex');
END
$$;
COMMENT ON FUNCTION pgmodels._edge_current(text, text) IS 'internal: the deployed model id, version and served artifact sha256 of a project, for a role with the export privilege (pgmodels serve''s bundle ETag)';

-- Grants. PUBLIC keeps: the user-facing functions above (export_bundle checks the
-- export privilege itself; edge_public_key gives out the public half only), and
-- _export_bundle and _edge_current, which check the caller's credential and privilege
-- themselves. Never PUBLIC: _edge_key (the private key), _edge_new_key, and
-- _edge_build (it signs what it is given: only definer functions may call it).
REVOKE EXECUTE ON FUNCTION
    pgmodels._edge_new_key(),
    pgmodels._edge_key(),
    pgmodels._edge_build(pgmodels.served_model, jsonb, text, bytea),
    pgmodels._export_bundle(text, bigint, text),
    pgmodels._edge_current(text, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    -- check the caller's credential and export privilege themselves
    pgmodels._export_bundle(text, bigint, text),
    pgmodels._edge_current(text, text)
TO PUBLIC;
