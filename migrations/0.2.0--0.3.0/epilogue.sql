
-- An administrator's grants carried over (see the prelude): for each function that is
-- still there under the same signature, PUBLIC loses EXECUTE again where it had been
-- revoked, and each role that had been granted EXECUTE has it again. An extension script
-- runs with the extension's schema on its search path, where a role with CREATE there
-- could put an operator for a pair of types pg_catalog compares only by coercion (oid
-- and integer, say): every operator here is pg_catalog's, named so, on one type.
DO $upgrade$
DECLARE
    saved jsonb := pg_catalog.current_setting('pgmodels.upgrade_acls', true)::jsonb;
    item record;
    grantee text;
BEGIN
    FOR item IN
        SELECT s.key AS fn, s.value AS old_acl, p.proacl AS new_acl
          FROM pg_catalog.jsonb_each_text(saved) s
          JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) pg_catalog.to_regprocedure(s.key)::pg_catalog.oid
         WHERE s.value OPERATOR(pg_catalog.<>) ''
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.aclexplode(item.old_acl::pg_catalog.aclitem[]) a
                        WHERE a.grantee OPERATOR(pg_catalog.=) 0::oid AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE')
           AND EXISTS (SELECT 1 FROM pg_catalog.aclexplode(coalesce(item.new_acl, pg_catalog.acldefault('f', 10))) a
                        WHERE a.grantee OPERATOR(pg_catalog.=) 0::oid AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE') THEN
            EXECUTE pg_catalog.format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', item.fn);
        END IF;
        FOR grantee IN
            SELECT a.grantee::regrole::text FROM pg_catalog.aclexplode(item.old_acl::pg_catalog.aclitem[]) a
             WHERE a.grantee OPERATOR(pg_catalog.<>) 0::oid AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
               AND a.grantee OPERATOR(pg_catalog.<>) a.grantor
               AND NOT EXISTS (SELECT 1 FROM pg_catalog.aclexplode(coalesce(item.new_acl, '{}'::pg_catalog.aclitem[])) b
                                WHERE b.grantee OPERATOR(pg_catalog.=) a.grantee
                                  AND b.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE')
        LOOP
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s', item.fn, grantee);  -- regrole text: quoted already
        END LOOP;
    END LOOP;
END
$upgrade$;
