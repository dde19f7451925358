
-- An administrator's grants carried over (see the prelude): for each function that is
-- still there under the same signature, PUBLIC loses EXECUTE again where it had been
-- revoked, and each role that had been granted EXECUTE has it again.
DO $upgrade$
DECLARE
    saved jsonb := pg_catalog.current_setting('pgmodels.upgrade_acls', true)::jsonb;
    item record;
    grantee text;
BEGIN
    FOR item IN
        SELECT s.key AS fn, s.value AS old_acl, p.proacl AS new_acl
          FROM pg_catalog.jsonb_each_text(saved) s
          JOIN pg_catalog.pg_proc p ON p.oid = pg_catalog.to_regprocedure(s.key)
         WHERE s.value <> ''
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.aclexplode(item.old_acl::aclitem[]) a
                        WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')
           AND EXISTS (SELECT 1 FROM pg_catalog.aclexplode(coalesce(item.new_acl, pg_catalog.acldefault('f', 10))) a
                        WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE') THEN
            EXECUTE pg_catalog.format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', item.fn);
        END IF;
        FOR grantee IN
            SELECT a.grantee::regrole::text FROM pg_catalog.aclexplode(item.old_acl::aclitem[]) a
             WHERE a.grantee <> 0 AND a.privilege_type = 'EXECUTE' AND a.grantee <> a.grantor
               AND NOT EXISTS (SELECT 1 FROM pg_catalog.aclexplode(coalesce(item.new_acl, '{}'::aclitem[])) b
                                WHERE b.grantee = a.grantee AND b.privilege_type = 'EXECUTE')
        LOOP
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %I', item.fn, grantee);
        END LOOP;
    END LOOP;
END
$upgrade$;
