-- ONNX in and out: models trained anywhere, and the artifact that serves.

CREATE OR REPLACE FUNCTION pgmodels._import_onnx(project_name text, model bytea, feature_names text[], task text,
    labels jsonb, feature_types text[], deploy boolean)
RETURNS TABLE (project text, task text, model_id bigint, version integer, deployed boolean)
LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return []
from pgmodels.catalog.onnx_io import import_onnx; return import_onnx(project_name, model, feature_names, task, labels, feature_types, deploy)
$$;
COMMENT ON FUNCTION pgmodels._import_onnx(text, bytea, text[], text, jsonb, text[], boolean) IS 'internal: the core of import_onnx()';

CREATE OR REPLACE FUNCTION @extschema@.import_onnx(
    project_name text,
    model bytea,
    feature_names text[],
    task text DEFAULT NULL,
    labels jsonb DEFAULT NULL,
    feature_types text[] DEFAULT NULL,
    deploy boolean DEFAULT true)
RETURNS TABLE (project text, task text, model_id bigint, version integer, deployed boolean)
LANGUAGE sql VOLATILE
AS $$
    SELECT * FROM pgmodels._import_onnx($1, $2, $3, $4, $5, $6, $7)
    UNION ALL  -- raises the error the core recorded, if any, once the core has run
    SELECT NULL, NULL, NULL, NULL, NULL WHERE pgmodels._raise_pending(NULL::boolean)
$$;
COMMENT ON FUNCTION @extschema@.import_onnx(text, bytea, text[], text, jsonb, text[], boolean) IS 'registers an ONNX model trained anywhere as a new version of a project, after checking that onnxruntime loads it and its inputs match the features';

-- The artifact a model serves from, byte for byte, for roles with the export privilege
-- on its project (and EXECUTE on pgmodels._lookup, the administrator's master switch).
-- Definer: it reads the catalog; the caller's credential says who is asking.
CREATE OR REPLACE FUNCTION pgmodels._export(project_name text, model_id bigint, credential text) RETURNS bytea
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid;
    served pgmodels.served_model;
BEGIN
    IF project_name IS NULL THEN
        RETURN NULL;
    END IF;
    caller := pgmodels._verify_caller(credential);
    IF NOT has_function_privilege(caller, 'pgmodels._lookup(text, bigint, text)', 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for function _lookup' USING ERRCODE = '42501',
            DETAIL = 'The administrator has turned predicting and exporting off for this role.';
    END IF;
    served := pgmodels._resolve(project_name, coalesce(model_id, 0), caller, 'export');
    IF served.project <> project_name THEN
        RAISE EXCEPTION 'project "%" has no model %', project_name, served.id USING ERRCODE = '42704',
            DETAIL = format('Model %s belongs to project "%s".', served.id, served.project);
    ELSIF served.runtime <> 'onnx' THEN
        RAISE EXCEPTION 'model % has no ONNX artifact', served.id
            USING ERRCODE = '0A000',
                  DETAIL = format('It could not be converted to ONNX and is served natively (%s); pgmodels.models.training says why.', served.runtime),
                  HINT = 'Train it with another algorithm or preprocessing to get an ONNX model.';
    ELSIF sha256(served.artifact) <> served.artifact_sha256 THEN
        RAISE EXCEPTION 'the artifact of model % fails its sha256 check', served.id
            USING ERRCODE = 'XX001',
                  DETAIL = 'The stored bytes differ from the ones the model was registered with.',
                  HINT = 'Restore the model from a backup, or train or import it again.';
    END IF;
    RETURN served.artifact;
END
$$;
COMMENT ON FUNCTION pgmodels._export(text, bigint, text) IS 'internal: the core of export_onnx(): checks the caller''s export privilege and the artifact''s sha256';

CREATE OR REPLACE FUNCTION @extschema@.export_onnx(project_name text, model_id bigint DEFAULT NULL) RETURNS bytea
LANGUAGE sql STABLE
AS $$ SELECT pgmodels._export($1, $2, pgmodels._credential()) $$;
COMMENT ON FUNCTION @extschema@.export_onnx(text, bigint) IS 'returns the exact ONNX artifact a model serves from: the deployed one, or the given model id; needs the export privilege on its project';
