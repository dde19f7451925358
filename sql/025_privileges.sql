-- Who is asking, and what they may do with a project.
--
-- Projects have owners: the role that first trained or imported one owns it, and it
-- (or any role that is a member of it, as for tables) may train, import, deploy and
-- grant. Others may predict with a project's models or export their artifacts once the
-- owner grants them predict or export (grant_project), and compare data with a model's
-- training profile (drift() and drift reports) once it grants them monitor: drift
-- statistics over data of one's own choosing reveal the training rows' distribution (a
-- table of one repeated value has a KS statistic equal to the training CDF there), so
-- that privilege says so by name and 'all' does not include it. So does explain
-- (explain_prediction(), the contributions outputs): a feature's contribution to each answer
-- makes a probe of the model one call per feature.
--
-- The catalog is written and read by SECURITY DEFINER functions, and a definer function
-- cannot see the role that called it. So the user-facing functions pass a caller
-- credential: pgmodels._credential() reads the view pgmodels._caller, which runs with its
-- owner's rights (it reads the secret key) but sees current_user as the querying role,
-- and returns "role oid:MAC", the MAC keyed by pgmodels._secret over the role and the
-- statement's stamp. A definer core checks it with _verify_caller and so knows the real
-- calling role. Nobody can make a credential for a role they are not acting as, and a
-- credential is good only for the statement (or, inside a procedure, the transaction)
-- that made it.

-- The per-statement stamp: statement_timestamp() changes with every top-level statement
-- and now() with every transaction, including those a procedure starts with COMMIT, so
-- their sum changes with both (each is a whole number of microseconds, and the sum stays
-- exact to well under one). A float8 is cheap for PL/Python to take and compare.
CREATE OR REPLACE FUNCTION pgmodels._stamp() RETURNS double precision
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT pg_catalog.date_part('epoch', pg_catalog.statement_timestamp()) + pg_catalog.date_part('epoch', pg_catalog.now()) $$;
COMMENT ON FUNCTION pgmodels._stamp() IS 'internal: a number that changes with every statement and every transaction: the key of the per-statement model cache and of caller credentials';

-- The calling role's oid (current_user, not the session's).
CREATE OR REPLACE FUNCTION pgmodels._me() RETURNS oid
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user $$;
COMMENT ON FUNCTION pgmodels._me() IS 'internal: the oid of current_user';

CREATE OR REPLACE VIEW pgmodels._caller WITH (security_barrier) AS
SELECT r.oid::text || ':' || pg_catalog.encode(pg_catalog.sha256(
           s.key || pg_catalog.int8send(r.oid::bigint) || pg_catalog.float8send(pgmodels._stamp()) || s.key), 'hex')
       AS credential
FROM pgmodels._secret s, pg_catalog.pg_roles r
WHERE r.rolname = current_user;
COMMENT ON VIEW pgmodels._caller IS 'internal: a credential for current_user and this statement (the view reads the secret key with its owner''s rights)';
GRANT SELECT ON pgmodels._caller TO PUBLIC;

-- PL/pgSQL, not SQL: it cannot be inlined (it reads a view), and PostgreSQL 15 plans a
-- SQL function's body anew in every statement that calls it, where PL/pgSQL keeps its
-- plans for the session; predict pays this once per statement (and through a
-- transaction-pooling PgBouncer every statement is a new transaction).
CREATE OR REPLACE FUNCTION pgmodels._credential() RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$ BEGIN RETURN (SELECT c.credential FROM pgmodels._caller c); END $$;
COMMENT ON FUNCTION pgmodels._credential() IS 'internal: a credential for current_user and this statement, for the definer cores';

-- Definer: it reads the secret key.
CREATE OR REPLACE FUNCTION pgmodels._verify_caller(credential text) RETURNS oid
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    role_oid bigint;
BEGIN
    IF credential ~ '^[0-9]{1,10}:[0-9a-f]{64}$' THEN
        role_oid := split_part(credential, ':', 1)::bigint;
        IF role_oid <= 4294967295 AND split_part(credential, ':', 2) =
           (SELECT encode(sha256(s.key || int8send(role_oid) || float8send(pgmodels._stamp()) || s.key), 'hex')
              FROM pgmodels._secret s) THEN
            RETURN role_oid::oid;
        END IF;
    END IF;
    RAISE EXCEPTION 'invalid caller credential'
        USING ERRCODE = '42501',
              DETAIL = 'pgmodels'' internal functions take a credential that only pgmodels._credential() makes, for the current role and statement.',
              HINT = 'Call the documented functions (predict, deploy, grant_project, ...), not their internal cores.';
END
$$;
COMMENT ON FUNCTION pgmodels._verify_caller(text) IS 'internal: the role a caller credential was made for, or an error when it was not made by pgmodels._credential() in this statement';

-- Definer: it reads the catalog. It answers about any role, as has_table_privilege does.
-- privilege: 'owner' (the owner or a member of it), 'predict', 'export', 'monitor', 'explain',
-- or 'use' (any). The owner has every privilege.
-- PL/pgSQL for its cached plans, as _credential.
CREATE OR REPLACE FUNCTION pgmodels._may(role oid, project_id bigint, privilege text) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN EXISTS (
        SELECT 1 FROM pgmodels.projects p
         WHERE p.id = _may.project_id
           AND CASE WHEN EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = p.owner)
                    THEN pg_has_role(_may.role, p.owner, 'USAGE') ELSE false END
        UNION ALL
        SELECT 1 FROM pgmodels.project_grants g
         WHERE g.project_id = _may.project_id AND _may.privilege <> 'owner'
           AND (_may.privilege = 'use' OR g.privilege = _may.privilege)
           AND CASE WHEN g.grantee = 0 THEN true
                    WHEN EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = g.grantee)
                    THEN pg_has_role(_may.role, g.grantee, 'USAGE') ELSE false END);
END
$$;
COMMENT ON FUNCTION pgmodels._may(oid, bigint, text) IS 'internal: whether a role may use a project: owner, predict, export, monitor, explain or use (any of them)';

-- Definer, to read the catalog; like has_table_privilege it answers about any role.
CREATE OR REPLACE FUNCTION @extschema@.has_project_privilege(role_name text, project_name text, privilege text) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    role_oid oid := (SELECT r.oid FROM pg_roles r WHERE r.rolname = role_name);
    project_id bigint := (SELECT p.id FROM pgmodels.projects p WHERE p.name = project_name);
BEGIN
    IF role_oid IS NULL THEN
        RAISE EXCEPTION 'role "%" does not exist', role_name USING ERRCODE = '42704';
    ELSIF privilege IS NULL OR privilege NOT IN ('owner', 'predict', 'export', 'monitor', 'explain', 'use') THEN
        RAISE EXCEPTION 'unrecognized privilege type "%"', privilege
            USING ERRCODE = '22023', HINT = 'Use owner, predict, export, monitor, explain or use.';
    ELSIF project_id IS NULL THEN
        RAISE EXCEPTION 'project "%" does not exist', project_name USING ERRCODE = '42704';
    END IF;
    RETURN pgmodels._may(role_oid, project_id, privilege);
END
$$;
COMMENT ON FUNCTION @extschema@.has_project_privilege(text, text, text) IS 'whether a role may use a project: owner (may train, import, deploy, grant), predict, export, monitor (drift statistics against its training profile), explain (per-feature contributions of its predictions), or use (any of these)';

-- grant_project / revoke_project: the owner's. Granting 'all' gives predict and export, as it
-- did before monitor existed (monitor reveals the training distribution, explain the
-- model's workings: they are granted by name only); revoking 'all' takes back every
-- privilege, monitor and explain included.
CREATE OR REPLACE FUNCTION pgmodels._grant_project(project_name text, role_name text, privilege text, is_grant boolean,
                                        credential text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    proj pgmodels.projects;
    grantee_oid oid;
    privs text[];
BEGIN
    IF role_name = 'public' THEN  -- as GRANT spells PUBLIC; a role named "Public" is itself
        grantee_oid := 0;
    ELSE
        SELECT r.oid INTO grantee_oid FROM pg_roles r WHERE r.rolname = role_name;
        IF grantee_oid IS NULL THEN
            RAISE EXCEPTION 'role "%" does not exist', role_name USING ERRCODE = '42704';
        END IF;
    END IF;
    privs := CASE privilege WHEN 'predict' THEN ARRAY['predict'] WHEN 'export' THEN ARRAY['export']
                            WHEN 'monitor' THEN ARRAY['monitor'] WHEN 'explain' THEN ARRAY['explain']
                            WHEN 'all' THEN CASE WHEN is_grant THEN ARRAY['predict', 'export']
                                                 ELSE ARRAY['predict', 'export', 'monitor', 'explain'] END END;
    IF privs IS NULL THEN
        RAISE EXCEPTION 'unrecognized privilege type "%"', privilege
            USING ERRCODE = '22023', HINT = 'Use predict, export, monitor, explain or all.';
    END IF;
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.name = project_name FOR UPDATE;
    IF proj.id IS NULL THEN
        RAISE EXCEPTION 'project "%" does not exist', project_name USING ERRCODE = '42704';
    END IF;
    PERFORM pgmodels._require_owner(caller, proj);
    IF is_grant THEN
        INSERT INTO pgmodels.project_grants (project_id, grantee, privilege)
        SELECT proj.id, grantee_oid, u FROM unnest(privs) u ON CONFLICT DO NOTHING;
    ELSE
        DELETE FROM pgmodels.project_grants g
         WHERE g.project_id = proj.id AND g.grantee = grantee_oid AND g.privilege = ANY (privs);
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._grant_project(text, text, text, boolean, text) IS 'internal: the core of grant_project() and revoke_project() (definer: only it writes the grants)';

CREATE OR REPLACE FUNCTION pgmodels._require_owner(caller oid, proj pgmodels.projects) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT pgmodels._may(caller, proj.id, 'owner') THEN
        RAISE EXCEPTION 'must be owner of project "%"', proj.name
            USING ERRCODE = '42501',
                  DETAIL = format('Project "%s" belongs to role "%s".', proj.name, proj.owner),
                  HINT = 'Train, import, deploy and grant are for the project''s owner and its members; use another project name for a project of your own.';
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._require_owner(oid, pgmodels.projects) IS 'internal: raises unless the role owns the project (or is a member of its owner)';

-- Drift statistics against a project's training profile: for its owner and the roles
-- granted monitor. Not a definer: only definer code calls it (_stage_profile), and _may
-- is PUBLIC's.
CREATE OR REPLACE FUNCTION pgmodels._require_monitor(caller oid, project_id bigint) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    project_name text := (SELECT p.name FROM pgmodels.projects p WHERE p.id = _require_monitor.project_id);
BEGIN
    IF NOT pgmodels._may(caller, project_id, 'monitor') THEN
        RAISE EXCEPTION 'permission denied to compare with the training profile of project "%"', project_name
            USING ERRCODE = '42501',
                  DETAIL = format('Drift statistics over rows of one''s choosing reveal the distribution of the '
                                  'project''s training rows (its quantiles and category values), so they are for '
                                  'its owner and the roles granted monitor on it; role "%s" is neither.',
                                  caller::regrole),
                  HINT = format('Its owner can grant it: SELECT grant_project(%L, %L, ''monitor'').', project_name,
                                caller::regrole::text);
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._require_monitor(oid, bigint) IS 'internal: raises unless the role owns the project or was granted monitor on it (drift statistics reveal the training distribution)';

CREATE OR REPLACE FUNCTION @extschema@.grant_project(project_name text, role_name text, privilege text DEFAULT 'predict')
RETURNS void LANGUAGE sql VOLATILE
AS $$ SELECT pgmodels._grant_project($1, $2, $3, true, pgmodels._credential()) $$;
COMMENT ON FUNCTION @extschema@.grant_project(text, text, text) IS 'lets a role (or PUBLIC) predict with a project''s models, export their artifacts, or both (privilege predict, export or all), or compare data with its training profile (monitor: drift statistics, which reveal the training distribution), or explain its predictions feature by feature (explain); monitor and explain are not part of all; for the project''s owner';

CREATE OR REPLACE FUNCTION @extschema@.revoke_project(project_name text, role_name text, privilege text DEFAULT 'all')
RETURNS void LANGUAGE sql VOLATILE
AS $$ SELECT pgmodels._grant_project($1, $2, $3, false, pgmodels._credential()) $$;
COMMENT ON FUNCTION @extschema@.revoke_project(text, text, text) IS 'takes back what grant_project gave (privilege predict, export, monitor, explain, or all: every one of them); for the project''s owner';

CREATE OR REPLACE VIEW pgmodels.project_privileges WITH (security_barrier) AS
SELECT p.name AS project, p.owner::text AS owner,
       CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::text END AS grantee,
       g.privilege, g.granted_by, g.granted_at
FROM pgmodels.project_grants g JOIN pgmodels.projects p ON p.id = g.project_id
WHERE pgmodels._may(pgmodels._me(), p.id, 'use');
COMMENT ON VIEW pgmodels.project_privileges IS 'who may predict with, export, monitor or explain each project''s models, for the projects the current role may use';
GRANT SELECT ON pgmodels.project_privileges TO PUBLIC;
