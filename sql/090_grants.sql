-- Who may do what. predict and friends are executable by PUBLIC, like any function;
-- training, deploying, importing and exporting models are for the roles an
-- administrator grants them to, for example:
--   GRANT EXECUTE ON FUNCTION train(text, text, text, text, text, jsonb, text, jsonb,
--                                   jsonb, real, text, boolean, jsonb) TO analyst;
-- pgmodels._store_model stays executable by PUBLIC: it checks the session's right to
-- train or import itself (see its comment).
REVOKE EXECUTE ON FUNCTION
    @extschema@.train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb),
    @extschema@.deploy(text, text, text),
    @extschema@.deploy(bigint),
    @extschema@.import_onnx(text, bytea, text[], text, jsonb, text[], boolean),
    @extschema@.export_onnx(text, bigint),
    pgmodels._deploy_strategy(text, text, text),
    pgmodels._deploy_model(bigint)
FROM PUBLIC;
