-- Who may do what. Predicting (and exporting, which reads the same artifact) is open to
-- PUBLIC, like any function; its one gate is pgmodels._lookup(text, bigint), so
--   REVOKE EXECUTE ON FUNCTION pgmodels._lookup(text, bigint) FROM PUBLIC;
--   GRANT EXECUTE ON FUNCTION pgmodels._lookup(text, bigint) TO app;
-- limits predict, predict_proba, predict_label, predict_batch and export_onnx to app.
-- Training, deploying and importing are for the roles an administrator grants them to,
-- for example:
--   GRANT EXECUTE ON FUNCTION train(text, text, text, text, text, jsonb, text, jsonb,
--                                   jsonb, real, text, boolean, jsonb) TO analyst;
-- pgmodels._store_model stays executable by PUBLIC: it checks the session's right to
-- train or import itself (see its comment).
REVOKE EXECUTE ON FUNCTION
    @extschema@.train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb),
    @extschema@.deploy(text, text, text),
    @extschema@.deploy(bigint),
    @extschema@.import_onnx(text, bytea, text[], text, jsonb, text[], boolean),
    pgmodels._deploy_strategy(text, text, text),
    pgmodels._deploy_model(bigint)
FROM PUBLIC;
