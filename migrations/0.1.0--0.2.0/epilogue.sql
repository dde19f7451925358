
-- The master switch carried over: the old pgmodels._lookup's grants, on the new one.
DO $upgrade$
DECLARE
    saved text := pg_catalog.current_setting('pgmodels.upgrade_lookup_acl', true);
    item record;
BEGIN
    IF coalesce(saved, '') = '' THEN
        RETURN;
    END IF;
    REVOKE EXECUTE ON FUNCTION pgmodels._lookup(text, bigint, text) FROM PUBLIC;
    FOR item IN SELECT a.grantee FROM pg_catalog.aclexplode(saved::aclitem[]) a
                 WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> a.grantor LOOP
        IF item.grantee = 0 THEN
            GRANT EXECUTE ON FUNCTION pgmodels._lookup(text, bigint, text) TO PUBLIC;
        ELSE
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION pgmodels._lookup(text, bigint, text) TO %I',
                                      item.grantee::regrole::text);
        END IF;
    END LOOP;
END
$upgrade$;

-- Who may train carried over: the old train()'s grants (0.1.0 revoked it from PUBLIC and
-- an administrator granted it to roles), on the new signature.
DO $upgrade$
DECLARE
    saved text := pg_catalog.current_setting('pgmodels.upgrade_train_acl', true);
    item record;
    fn regprocedure := '@extschema@.train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean)'::regprocedure;
BEGIN
    IF coalesce(saved, '') = '' THEN
        RETURN;
    END IF;
    FOR item IN SELECT a.grantee FROM pg_catalog.aclexplode(saved::aclitem[]) a
                 WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> a.grantor LOOP
        IF item.grantee = 0 THEN
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO PUBLIC', fn);
        ELSE
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %I', fn, item.grantee::regrole::text);
        END IF;
    END LOOP;
END
$upgrade$;
