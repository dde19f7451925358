-- ONNX in and out: models trained anywhere, and the artifact that serves.

CREATE FUNCTION pgmodels._import_onnx(project_name text, model bytea, feature_names text[], task text,
    labels jsonb, feature_types text[], deploy boolean)
RETURNS TABLE (project text, task text, model_id bigint, version integer, deployed boolean)
LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return []
from pgmodels.catalog.onnx_io import import_onnx; return import_onnx(project_name, model, feature_names, task, labels, feature_types, deploy)
$$;
COMMENT ON FUNCTION pgmodels._import_onnx(text, bytea, text[], text, jsonb, text[], boolean) IS 'internal: the core of import_onnx()';

CREATE FUNCTION @extschema@.import_onnx(
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

-- The artifact a model serves from, byte for byte (definer: the catalog is not readable
-- by PUBLIC; EXECUTE is granted by an administrator).
CREATE FUNCTION @extschema@.export_onnx(project_name text, model_id bigint DEFAULT NULL) RETURNS bytea
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    chosen record;
BEGIN
    SELECT m.id, m.runtime, m.artifact, m.training INTO chosen
      FROM pgmodels.models m JOIN pgmodels.projects p ON p.id = m.project_id
     WHERE p.name = project_name
       AND m.id = coalesce(export_onnx.model_id,
                           (SELECT d.model_id FROM pgmodels.deployments d WHERE d.project_id = p.id
                             ORDER BY d.id DESC LIMIT 1));
    IF chosen.id IS NULL THEN
        IF NOT EXISTS (SELECT 1 FROM pgmodels.projects p WHERE p.name = project_name) THEN
            RAISE EXCEPTION 'project "%" does not exist', project_name USING ERRCODE = '42704';
        ELSIF export_onnx.model_id IS NULL THEN
            RAISE EXCEPTION 'project "%" has no deployed model', project_name
                USING ERRCODE = '55000', HINT = 'Pass a model_id, or deploy a model first.';
        END IF;
        RAISE EXCEPTION 'project "%" has no model %', project_name, export_onnx.model_id USING ERRCODE = '42704';
    END IF;
    IF chosen.runtime <> 'onnx' THEN
        RAISE EXCEPTION 'model % has no ONNX artifact', chosen.id
            USING ERRCODE = '0A000',
                  DETAIL = format('It could not be converted to ONNX and is served natively (%s): %s.',
                                  chosen.runtime, coalesce(chosen.training #>> '{conversion,reason}', 'no reason recorded')),
                  HINT = 'Train it with another algorithm or preprocessing to get an ONNX model.';
    END IF;
    RETURN chosen.artifact;
END
$$;
COMMENT ON FUNCTION @extschema@.export_onnx(text, bigint) IS 'returns the exact ONNX artifact a model serves from: the deployed one, or the given model id';
