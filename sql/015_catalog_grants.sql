-- Catalog tables added in 0.2.0: per-project grants and the credential key.
-- (Upgrades from 0.1.0 run this file as it is: see migrations/.)

-- Who else may use a project: predict with its models, export their artifacts, or compare
-- data with its training profile (monitor: drift statistics, which reveal the training
-- rows' distribution), or explain its predictions feature by feature (explain).
-- grantee 0 ('-'::regrole) is PUBLIC.
CREATE TABLE pgmodels.project_grants (
    project_id  bigint NOT NULL REFERENCES pgmodels.projects (id) ON DELETE CASCADE,
    grantee     regrole NOT NULL,
    privilege   text NOT NULL CONSTRAINT project_grants_privilege_check
                CHECK (privilege IN ('predict', 'export', 'monitor', 'explain')),
    granted_by  name NOT NULL DEFAULT session_user,
    granted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, grantee, privilege)
);
COMMENT ON TABLE pgmodels.project_grants IS 'per-project privileges the owner granted: predict, export, monitor and explain, to roles or PUBLIC (grantee 0)';

-- A per-database random key that authenticates the caller credentials of
-- sql/025_privileges.sql. Made anew by CREATE EXTENSION (so not dumped), readable by no one
-- but the extension owner.
CREATE TABLE pgmodels._secret (
    onerow  boolean PRIMARY KEY DEFAULT true CHECK (onerow),
    key     bytea NOT NULL CHECK (length(key) >= 32)
);
COMMENT ON TABLE pgmodels._secret IS 'internal: the key that authenticates caller credentials; readable only by the extension owner';
INSERT INTO pgmodels._secret (key)
SELECT pg_catalog.decode(pg_catalog.replace(pg_catalog.gen_random_uuid()::text || pg_catalog.gen_random_uuid()::text
                                            || pg_catalog.gen_random_uuid()::text, '-', ''), 'hex');

REVOKE ALL ON pgmodels.project_grants, pgmodels._secret FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pgmodels.project_grants', '');
