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

-- Grants of this area. Functions are created executable by PUBLIC (sql/090_grants.sql ran
-- before this file); internal ones are not, but for those listed here, each safe to call.
REVOKE EXECUTE ON FUNCTION
    pgmodels._take_staged_explainer(text),
    pgmodels._store_explainer(text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    -- train() calls it as the caller: it stores only a record this backend just staged, for
    -- a model of a project the staging role owns
    pgmodels._store_explainer(text)
TO PUBLIC;
