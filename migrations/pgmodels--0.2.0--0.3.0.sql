-- built by extension/Makefile from migrations/0.2.0--0.3.0/ and sql/: edit those, not this file

-- migrations/0.2.0--0.3.0/prelude.sql
-- pgmodels 0.2.0 -> 0.3.0. Built by extension/Makefile: this prelude, then every file of
-- sql/ that is not created once (functions and views: CREATE OR REPLACE, so functions
-- whose signature did not change keep their grants) and the files new in 0.3.0, then
-- the epilogue.
\echo Use "ALTER EXTENSION pgmodels UPDATE" to load this file. \quit

-- Names resolve in pg_catalog only, as in the install (sql/000_search_path.sql, replayed
-- below, says why).
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

-- Open to PUBLIC from 0.3.0 (a snapshot's caller converts its columns to the types it
-- names, sql/120_families.sql): granted before the grants are saved, so that the epilogue
-- does not take 0.2.0's own revoke for an administrator's.
GRANT EXECUTE ON FUNCTION pgmodels._snapshot_type(oid, integer) TO PUBLIC;

-- Every operator of a statement or DO block here and in the epilogue is pg_catalog's,
-- named so, on operands of one type: an extension script runs with the extension's
-- schema on its search path, where a role with CREATE could put an operator for a pair of
-- types pg_catalog compares only by coercion, and it would run as the superuser.

-- The grants of every function, as an administrator left them: replaying the sources
-- re-runs their GRANT and REVOKE statements, and the epilogue puts back what an
-- administrator had changed (a function revoked from PUBLIC, granted to a role).
SELECT pg_catalog.set_config('pgmodels.upgrade_acls', coalesce((
    SELECT pg_catalog.jsonb_object_agg(p.oid::pg_catalog.regprocedure::text, coalesce(p.proacl::text, ''))
      FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_depend d
        ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid
       AND d.objid OPERATOR(pg_catalog.=) p.oid AND d.deptype OPERATOR(pg_catalog.=) 'e'::"char"
      JOIN pg_catalog.pg_extension e ON e.oid OPERATOR(pg_catalog.=) d.refobjid
       AND e.extname OPERATOR(pg_catalog.=) 'pgmodels'::pg_catalog.name), '{}')::text, true);

-- The monitor privilege (sql/015_catalog_grants.sql): drift statistics against a project's
-- training profile, granted by name; and the explain privilege (explain_prediction() and
-- the contributions outputs: per-feature contributions), also granted by name.
ALTER TABLE pgmodels.project_grants DROP CONSTRAINT project_grants_privilege_check,
    ADD CONSTRAINT project_grants_privilege_check CHECK (privilege IN ('predict', 'export', 'monitor', 'explain'));
COMMENT ON TABLE pgmodels.project_grants IS 'per-project privileges the owner granted: predict, export, monitor and explain, to roles or PUBLIC (grantee 0)';

-- What a monitor's retrain trains when it is not what the deployed version was trained
-- with (set_monitor_retrain, sql/101_monitor.sql); _monitor_get returns it too.
ALTER TABLE pgmodels.monitor ADD COLUMN retrain_with jsonb;
DROP FUNCTION pgmodels._monitor_get(text, bigint);

-- An imported model's static work estimate (python_udfs/pgmodels/catalog/onnx_cost.py),
-- which serving reads to decide which runs a cancel must be able to stop.
ALTER TYPE pgmodels.served_model ADD ATTRIBUTE work_per_row double precision;

-- A tree ensemble's trees as the C library walks them, made by train() and stored with the
-- version (sql/010_catalog.sql), which a backend's first predict() serves from without
-- starting onnxruntime; the staged model carries them (_take_staged's new OUT column).
ALTER TABLE pgmodels.models ADD COLUMN native_trees bytea;
ALTER TYPE pgmodels.served_model ADD ATTRIBUTE native_trees bytea;
DROP FUNCTION pgmodels._take_staged(text);

-- The contributions output of the vectorized path (sql/044_vectorized_types.sql): batch jobs,
-- stream consumers and pgmodels serve (explanations, sql/125_explain.sql), and the batch
-- jobs that ask for it (sql/070_batch_catalog.sql).
ALTER TYPE pgmodels.scored_rows ADD ATTRIBUTE contributions jsonb[];
-- Rollouts (sql/127_rollouts.sql): the version that answered each row, when a canary
-- splits a block between two; and promote_rollout()'s deployments.
ALTER TYPE pgmodels.scored_rows ADD ATTRIBUTE model_ids bigint[], ADD ATTRIBUTE model_versions integer[];
ALTER TABLE pgmodels.deployments DROP CONSTRAINT deployments_strategy_check,
    ADD CONSTRAINT deployments_strategy_check
    CHECK (strategy IN ('automatic', 'import', 'best_score', 'most_recent', 'rollback', 'model_id', 'rollout'));
COMMENT ON TYPE pgmodels.scored_rows IS 'internal: the answers for a block of rows, in row order; probabilities flattened, classes per row; contributions (0.3.0) per row as feature -> contribution with "(base)"; model_ids and model_versions (0.3.0) per row when a rollout split the block between two versions';
ALTER TABLE pgmodels.batch_job DROP CONSTRAINT batch_job_outputs_check,
    ADD CONSTRAINT batch_job_outputs_check CHECK (outputs <@ ARRAY['prediction', 'probabilities', 'label', 'contributions']
                                                 AND cardinality(outputs) > 0);

-- No two projects whose names differ only in case (sql/010_catalog.sql). A database that
-- has some cannot take the index: the upgrade stops and names them, for the administrator
-- to rename or drop one of each. Names that only look odd (spaces at an end, invisible
-- characters) stay as they are: the name rules apply to projects made from now on.
DO $$
DECLARE
    clashes text;
BEGIN
    SELECT pg_catalog.string_agg(c.names, '; ' ORDER BY c.names) INTO clashes
      FROM (SELECT pg_catalog.string_agg(pg_catalog.format('%L (id %s)', p.name, p.id), ', ' ORDER BY p.id) AS names
              FROM pgmodels.projects p GROUP BY pg_catalog.lower(p.name) HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 1::bigint) c;
    IF clashes IS NOT NULL THEN
        RAISE EXCEPTION 'projects whose names differ only in case: %', clashes USING ERRCODE = '23505',
            DETAIL = 'pgmodels 0.3.0 keeps project names unique regardless of case (a unique index on lower(name)): one would pass for the other in the console, in /metrics and in bundles.',
            HINT = 'Rename one of each (as a superuser: UPDATE pgmodels.projects SET name = ''...'' WHERE id = ...) or drop it (DELETE FROM pgmodels.projects WHERE id = ...), then run ALTER EXTENSION pgmodels UPDATE again.';
    END IF;
END
$$;
CREATE UNIQUE INDEX projects_name_lower_key ON pgmodels.projects (lower(name));

-- sql/000_search_path.sql
-- Every statement of this script (and of an update's) resolves names in pg_catalog only.
-- An extension script runs with the extension's schema on its search path, and a role
-- with CREATE there could have put an operator for a pair of types pg_catalog compares
-- only by coercion (oid and regclass, bigint and numeric): a view, default or check made
-- here would bind to it, and a statement run here would run it as the superuser that
-- installs. So each object this script makes and each name it uses is schema-qualified,
-- and the path is pg_catalog's alone until the script ends (the setting is local to it).
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

-- sql/020_environment.sql
-- The server-side Python environment, and how errors leave Python.
--
-- PL/Python runs the server's own interpreter (python3.11 on Debian 12). The packages
-- pgmodels imports live in a virtual environment built from that same interpreter and
-- named by the setting pgmodels.venv. Only the administrator chooses it: the setting is
-- read from the server's configuration files (postgresql.conf, or ALTER SYSTEM, which
-- only a superuser may run), never from SET, ALTER ROLE or ALTER DATABASE, which other
-- roles could use to make the server import their code. _activate() puts that
-- environment on sys.path once per backend. _activate_core is the one PL/Python body
-- that is more than a call into the pgmodels package, because it is what makes the
-- package importable.
--
-- Errors: PL/Python would prefix every error with a Python type name. Instead the
-- Python side records the error as pending and returns NULL, and the SQL side raises it
-- with RAISE ... USING (pgmodels._raise_pending), in PostgreSQL's own style.

-- A pending error belongs to the statement that recorded it: the Python side tags it with
-- the statement's stamp (pgmodels._stamp()), this hands it only to a caller of the same
-- statement and drops any other, and every pgmodels function drops a stale one when it
-- starts (see pgmodels/_plpy.py). So none surfaces in a later statement or another role's,
-- even in a pooled backend. (Errors recorded in a parallel worker are untagged: no other
-- session shares a worker.)
CREATE OR REPLACE FUNCTION pgmodels._pending_error(stamp double precision, OUT message text, OUT detail text,
                                                   OUT hint text, OUT sqlstate text)
RETURNS SETOF record
LANGUAGE plpython3u PARALLEL SAFE
AS $$
pending = GD.pop('pgmodels.pending', None)
return [pending[:4]] if pending and (len(pending) < 5 or pending[4] is None or pending[4] == stamp) else []
$$;
COMMENT ON FUNCTION pgmodels._pending_error(double precision) IS 'internal: takes the error the Python side recorded in this statement, if any';

-- Raises the pending error, or returns NULL when there is none. The argument only fixes
-- the result type, so that coalesce(core(...), pgmodels._raise_pending(NULL::real))
-- costs nothing unless the core returned NULL.
CREATE OR REPLACE FUNCTION pgmodels._raise_pending(result_type anyelement) RETURNS anyelement
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
    e record;
BEGIN
    SELECT * INTO e FROM pgmodels._pending_error(pgmodels._stamp());
    IF e.message IS NULL THEN
        RETURN NULL;
    ELSIF e.detail IS NOT NULL AND e.hint IS NOT NULL THEN
        RAISE EXCEPTION USING MESSAGE = e.message, DETAIL = e.detail, HINT = e.hint, ERRCODE = e.sqlstate;
    ELSIF e.detail IS NOT NULL THEN
        RAISE EXCEPTION USING MESSAGE = e.message, DETAIL = e.detail, ERRCODE = e.sqlstate;
    ELSIF e.hint IS NOT NULL THEN
        RAISE EXCEPTION USING MESSAGE = e.message, HINT = e.hint, ERRCODE = e.sqlstate;
    ELSE
        RAISE EXCEPTION USING MESSAGE = e.message, ERRCODE = e.sqlstate;
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._raise_pending(anyelement) IS 'internal: raises the error the Python side recorded, in PostgreSQL''s style, or returns NULL';

-- A setting of the server's configuration files, for pgmodels.* names only. Definer:
-- pg_file_settings is for superusers; what it returns here is the administrator's.
CREATE OR REPLACE FUNCTION pgmodels._admin_setting(setting_name text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT f.setting FROM pg_catalog.pg_file_settings f
     WHERE f.name = setting_name AND setting_name LIKE 'pgmodels.%' AND f.error IS NULL
     ORDER BY f.seqno DESC LIMIT 1
$$;
COMMENT ON FUNCTION pgmodels._admin_setting(text) IS 'internal: a pgmodels.* setting as the server''s configuration files give it (postgresql.conf, ALTER SYSTEM); session, role and database settings are ignored';

CREATE OR REPLACE FUNCTION pgmodels._active() RETURNS boolean
LANGUAGE plpython3u STABLE PARALLEL SAFE
AS $$ return 'pgmodels.active' in GD $$;
COMMENT ON FUNCTION pgmodels._active() IS 'internal: whether this backend has put the pgmodels environment on sys.path';

-- It runs no query (PL/Python's queries open subtransactions, which parallel workers may
-- not), so the caller passes the setting and the extension's version. Not for PUBLIC:
-- only _activate() calls it, with the administrator's setting.
CREATE OR REPLACE FUNCTION pgmodels._activate_core(venv text, extversion text) RETURNS text
LANGUAGE plpython3u STABLE PARALLEL SAFE
AS $$
import os, sys
if GD.get('pgmodels.active'):
    return None
def fail(msg, detail, hint):
    GD['pgmodels.pending'] = (msg, detail, hint, '55000')
    return msg
here = '%d.%d' % sys.version_info[:2]
server_python = os.path.join(sys.base_prefix, 'bin', 'python' + here)
make_hint = ('Run "pgmodels install --dsn <url>" with the pgmodels tool installed in a virtual '
             'environment built by %s, or run scripts/install.sh from the pgmodels source tree.' % server_python)
if not venv:
    return fail('pgmodels.venv is not set',
                'pgmodels imports its Python packages from the virtual environment this setting names, '
                'read from the server\'s configuration files only.',
                'Set it in postgresql.conf or with ALTER SYSTEM SET pgmodels.venv, then SELECT pg_reload_conf(); '
                'or ' + make_hint[0].lower() + make_hint[1:])
cfg = os.path.join(venv, 'pyvenv.cfg')
try:
    with open(cfg) as f:
        settings = dict((k.strip(), v.strip()) for k, v in (l.split('=', 1) for l in f if '=' in l))
except OSError as e:
    return fail('pgmodels.venv "%s" is not a readable virtual environment' % venv,
                'Reading %s failed: %s.' % (cfg, e.strerror), make_hint)
built = settings.get('version', settings.get('version_info', ''))
if '.'.join(built.split('.')[:2]) != here:
    return fail('pgmodels.venv "%s" was built for another Python' % venv,
                'It was built with Python %s; this server runs Python %s.' % (built or 'unknown', sys.version.split()[0]),
                make_hint)
import site
before = list(sys.path)
site.addsitedir(os.path.join(venv, 'lib', 'python' + here, 'site-packages'))
sys.path[:] = [p for p in sys.path if p not in before] + before
try:
    import pgmodels
except Exception as e:
    sys.path[:] = before
    return fail('the pgmodels Python package cannot be imported from pgmodels.venv "%s"' % venv,
                'Importing it failed with %s: %s.' % (type(e).__name__, e), make_hint)
os.environ['OMP_NUM_THREADS'] = '1'  # before any OpenMP library loads; see pgmodels/training/runner.py
if extversion and extversion != pgmodels.__version__:
    sys.path[:] = before
    for name in [m for m in sys.modules if m == 'pgmodels' or m.startswith('pgmodels.')]:
        del sys.modules[name]
    return fail('pgmodels Python package %s does not match the extension version %s' % (pgmodels.__version__, extversion),
                'The package in %s and the extension''s SQL objects come from different releases.' % venv,
                'Run "ALTER EXTENSION pgmodels UPDATE", or install the matching package into the virtual environment.')
GD['pgmodels.active'] = True
return None
$$;
COMMENT ON FUNCTION pgmodels._activate_core(text, text) IS 'internal: puts a virtual environment on the server''s sys.path once per session; returns the problem (and records it as pending) when it cannot';

-- Definer, so that any role can activate the administrator's environment and no other.
CREATE OR REPLACE FUNCTION pgmodels._activate() RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pgmodels._active() THEN
        RETURN NULL;
    END IF;
    RETURN pgmodels._activate_core(pgmodels._admin_setting('pgmodels.venv'),
                                   (SELECT e.extversion FROM pg_catalog.pg_extension e WHERE e.extname = 'pgmodels'));
END
$$;
COMMENT ON FUNCTION pgmodels._activate() IS 'internal: activates the environment that pgmodels.venv names in the server''s configuration files';

-- Definer: shared_preload_libraries and cron.database_name are for superusers to read;
-- whether pg_cron is there is not a secret.
CREATE OR REPLACE FUNCTION pgmodels._cron_status(OUT preloaded text, OUT database_name text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.current_setting('shared_preload_libraries'), pg_catalog.current_setting('cron.database_name', true) $$;
COMMENT ON FUNCTION pgmodels._cron_status() IS 'internal: shared_preload_libraries and cron.database_name, for pgmodels.doctor()';

CREATE OR REPLACE FUNCTION pgmodels._doctor() RETURNS TABLE (item text, value text, ok boolean)
LANGUAGE plpython3u
AS $$
import sys
problem = plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']
if problem: GD.pop('pgmodels.pending', None); return [('server python', sys.version.split()[0], True), ('pgmodels.venv', problem, False)]
from pgmodels.doctor import report; return report()
$$;
COMMENT ON FUNCTION pgmodels._doctor() IS 'internal: the core of pgmodels.doctor()';

CREATE OR REPLACE FUNCTION pgmodels.doctor() RETURNS TABLE (item text, value text, ok boolean)
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY SELECT * FROM pgmodels._doctor();
    PERFORM pgmodels._raise_pending(NULL::integer);
END
$$;
COMMENT ON FUNCTION pgmodels.doctor() IS 'reports the server''s Python, the virtual environment in use, each package''s version and whether pg_cron is loaded';

-- sql/025_privileges.sql
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

-- sql/030_catalog_writes.sql
-- Writing the catalog: storing a model version, and deploying one.
--
-- Only these SECURITY DEFINER functions write pgmodels.projects, models and deployments.
-- They need the extension owner's rights because no other role may write those tables,
-- and each checks who is asking (see sql/025_privileges.sql): only a project's owner, or
-- a member of the owner role, stores, deploys or rolls back its models.

CREATE OR REPLACE FUNCTION pgmodels._key_metric(task text, metrics jsonb) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (metrics ->> CASE task WHEN 'classification' THEN 'f1' WHEN 'clustering' THEN 'silhouette'
                                     WHEN 'decomposition' THEN 'cumulative_explained_variance' ELSE 'r2' END)::double precision $$;
COMMENT ON FUNCTION pgmodels._key_metric(text, jsonb) IS 'internal: the metric deploy compares models by: f1 for classification, r2 for regression (joint: averaged over the targets), silhouette for clustering, cumulative_explained_variance for decomposition';


-- A new project's name: plain enough to pass for no other (pgmodels._check_name) and not
-- an existing project's but for case, which would pose as it in the console, /metrics
-- and bundles. The unique index projects_name_lower_key (sql/010_catalog.sql) refuses
-- the same when two sessions make both at once. Case is as the database's lower() sees
-- it (with a C collation, ASCII letters only). Not a definer: the definer functions that
-- make projects call it, and only they.
CREATE OR REPLACE FUNCTION pgmodels._check_new_project(project_name text) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    existing text;
BEGIN
    PERFORM pgmodels._check_name('project', project_name);
    SELECT p.name INTO existing FROM pgmodels.projects p
     WHERE lower(p.name) = lower(project_name) AND p.name <> project_name
     ORDER BY p.id LIMIT 1;
    IF existing IS NOT NULL THEN
        RAISE EXCEPTION 'project "%" differs from project "%" only in case', project_name, existing
            USING ERRCODE = '42710',
                  DETAIL = 'Project names that differ only in case would pass for one another in the console, in /metrics and in bundles.',
                  HINT = format('Use project "%s", or a name that differs by more than case.', existing);
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._check_new_project(text) IS 'internal: raises unless a new project''s name passes _check_name and is no existing project''s but for case';

-- Storing a model version. train() and import_onnx() run with the caller's rights (so
-- training reads only what the caller may read); when they have a checked model they
-- stage it in the backend's Python state under a one-time random token, together with
-- the role that called them, and call _store_model(token). Nothing reaches the catalog
-- that this backend's own train() or import_onnx() did not just produce: a direct call
-- has no staged model to name. The staged role must own the project (a new project
-- becomes its own).
CREATE OR REPLACE FUNCTION pgmodels._take_staged(token text,
    OUT role oid, OUT project_name text, OUT task text, OUT algorithm text, OUT runtime text, OUT artifact bytea,
    OUT hyperparams jsonb, OUT metrics jsonb, OUT search_results jsonb, OUT feature_names text[],
    OUT feature_types text[], OUT labels jsonb, OUT training jsonb, OUT library_versions jsonb,
    OUT last_train jsonb, OUT deploy_mode text, OUT native_trees bytea)
LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD: return None  # nothing was staged in this backend
from pgmodels.catalog.store import take_staged; return take_staged(token)
$$;
COMMENT ON FUNCTION pgmodels._take_staged(text) IS 'internal: takes the model train() or import_onnx() staged in this backend under a one-time token';

CREATE OR REPLACE FUNCTION pgmodels._store_model(token text, OUT model_id bigint, OUT version integer, OUT deployed boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    proj pgmodels.projects;
    current_model pgmodels.models;
BEGIN
    SELECT * INTO s FROM pgmodels._take_staged(token);
    IF s.role IS NULL THEN
        RAISE EXCEPTION 'no model is staged under this token'
            USING ERRCODE = '42501',
                  DETAIL = 'Only train() and import_onnx() store models, each the one it has just made and checked.';
    ELSIF s.deploy_mode IS NULL OR s.deploy_mode NOT IN ('if_better', 'always', 'never') THEN
        RAISE EXCEPTION 'unknown deploy mode "%"', s.deploy_mode USING ERRCODE = '22023';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pgmodels.projects p WHERE p.name = s.project_name) THEN
        PERFORM pgmodels._check_new_project(s.project_name);
    END IF;
    -- no conflict target: a project of this name, or of this name but for case that another
    -- session has just made (projects_name_lower_key), leaves the insert undone
    INSERT INTO pgmodels.projects AS p (name, task, owner) VALUES (s.project_name, s.task, s.role)
        ON CONFLICT DO NOTHING;
    SELECT * INTO proj FROM pgmodels.projects p WHERE p.name = s.project_name FOR UPDATE;
    IF proj.id IS NULL THEN
        PERFORM pgmodels._check_new_project(s.project_name);  -- raises: the other session's name is seen now
        RAISE EXCEPTION 'could not create project "%"', s.project_name USING ERRCODE = '40001',
            DETAIL = 'Another session was creating a project of the same name but for case.',
            HINT = 'Try again.';
    END IF;
    PERFORM pgmodels._require_owner(s.role, proj);
    IF proj.task <> s.task THEN
        RAISE EXCEPTION 'project "%" is a % project, not %', s.project_name, proj.task, s.task
            USING ERRCODE = '22023', HINT = 'Use another project name for another task.';
    END IF;
    SELECT coalesce(max(m.version), 0) + 1 INTO version FROM pgmodels.models m WHERE m.project_id = proj.id;
    INSERT INTO pgmodels.models (project_id, version, task, algorithm, runtime, artifact, artifact_sha256,
                                 hyperparams, metrics, search_results, feature_names, feature_types, labels,
                                 training, library_versions, native_trees)
    VALUES (proj.id, version, s.task, s.algorithm, s.runtime, s.artifact, pg_catalog.sha256(s.artifact),
            coalesce(s.hyperparams, '{}'), coalesce(s.metrics, '{}'), s.search_results, s.feature_names,
            s.feature_types, s.labels, coalesce(s.training, '{}'), coalesce(s.library_versions, '{}'),
            s.native_trees)
    RETURNING id INTO model_id;
    IF s.last_train IS NOT NULL THEN
        UPDATE pgmodels.projects p SET last_train = s.last_train WHERE p.id = proj.id;
    END IF;

    SELECT m.* INTO current_model FROM pgmodels.deployments d JOIN pgmodels.models m ON m.id = d.model_id
     WHERE d.project_id = proj.id ORDER BY d.id DESC LIMIT 1;
    -- A model whose key metric is undefined (no test rows, say) is kept, never deployed by itself.
    deployed := CASE s.deploy_mode
        WHEN 'always' THEN true
        WHEN 'if_better' THEN pgmodels._key_metric(s.task, s.metrics) IS NOT NULL
             AND (current_model.id IS NULL
                  OR pgmodels._key_metric(s.task, s.metrics)
                     > coalesce(pgmodels._key_metric(s.task, current_model.metrics), '-Infinity'))
        ELSE false END;
    IF deployed THEN
        INSERT INTO pgmodels.deployments (project_id, model_id, strategy)
        VALUES (proj.id, model_id, CASE s.deploy_mode WHEN 'always' THEN 'import' ELSE 'automatic' END);
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._store_model(text) IS 'internal: stores the model version train() or import_onnx() staged under a token (and deploys it if asked), after checking that the staging role owns the project';

-- A project's task and last train() arguments, for its owner (train() reuses them).
CREATE OR REPLACE FUNCTION pgmodels._project_info(project_name text, credential text, OUT task text, OUT last_train jsonb)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    proj pgmodels.projects;
BEGIN
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.name = project_name;
    IF proj.id IS NOT NULL THEN
        PERFORM pgmodels._require_owner(caller, proj);
        task := proj.task;
        last_train := proj.last_train;
    ELSE
        -- a new project: its name is checked before any training (and again when stored)
        PERFORM pgmodels._check_new_project(project_name);
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._project_info(text, text) IS 'internal: a project''s task and last train() arguments, for its owner, or for a new project the check of its name (definer: the catalog is not readable by PUBLIC)';

-- deploy() is a SQL function over these two: PL/pgSQL cannot have an argument and a
-- result column of the same name, and pgml's deploy() has both (strategy, algorithm).
CREATE OR REPLACE FUNCTION pgmodels._deploy_strategy(project_name text, strategy text, algorithm text, credential text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    proj pgmodels.projects;
    chosen pgmodels.models;
    current_id bigint;
BEGIN
    SELECT * INTO proj FROM pgmodels.projects p WHERE p.name = project_name FOR UPDATE;
    IF proj.id IS NULL THEN
        RAISE EXCEPTION 'project "%" does not exist', project_name USING ERRCODE = '42704';
    END IF;
    PERFORM pgmodels._require_owner(caller, proj);
    SELECT d.model_id INTO current_id FROM pgmodels.deployments d
     WHERE d.project_id = proj.id ORDER BY d.id DESC LIMIT 1;
    IF _deploy_strategy.strategy = 'best_score' THEN
        SELECT m.* INTO chosen FROM pgmodels.models m
         WHERE m.project_id = proj.id AND (_deploy_strategy.algorithm IS NULL OR m.algorithm = _deploy_strategy.algorithm)
         ORDER BY pgmodels._key_metric(m.task, m.metrics) DESC NULLS LAST, m.id DESC LIMIT 1;
    ELSIF _deploy_strategy.strategy = 'most_recent' THEN
        SELECT m.* INTO chosen FROM pgmodels.models m
         WHERE m.project_id = proj.id AND (_deploy_strategy.algorithm IS NULL OR m.algorithm = _deploy_strategy.algorithm)
         ORDER BY m.id DESC LIMIT 1;
    ELSIF _deploy_strategy.strategy = 'rollback' THEN
        SELECT m.* INTO chosen FROM pgmodels.deployments d JOIN pgmodels.models m ON m.id = d.model_id
         WHERE d.project_id = proj.id AND d.model_id IS DISTINCT FROM current_id
           AND (_deploy_strategy.algorithm IS NULL OR m.algorithm = _deploy_strategy.algorithm)
         ORDER BY d.id DESC LIMIT 1;
        IF chosen.id IS NULL THEN
            RAISE EXCEPTION 'project "%" has no earlier deployment to roll back to', project_name
                USING ERRCODE = '55000', DETAIL = 'Its deployment history holds no other model.';
        END IF;
    ELSE
        RAISE EXCEPTION 'unknown deploy strategy "%"', _deploy_strategy.strategy
            USING ERRCODE = '22023', HINT = 'Use best_score, most_recent or rollback.';
    END IF;
    IF chosen.id IS NULL THEN
        RAISE EXCEPTION 'project "%" has no model%', project_name,
              CASE WHEN _deploy_strategy.algorithm IS NULL THEN '' ELSE format(' trained with algorithm "%s"', _deploy_strategy.algorithm) END
            USING ERRCODE = '55000';
    END IF;
    INSERT INTO pgmodels.deployments (project_id, model_id, strategy) VALUES (proj.id, chosen.id, _deploy_strategy.strategy);
    RETURN chosen.id;
END
$$;
COMMENT ON FUNCTION pgmodels._deploy_strategy(text, text, text, text) IS 'internal: the core of deploy(project_name, strategy, algorithm) (definer: only it writes the catalog)';

CREATE OR REPLACE FUNCTION pgmodels._deploy_model(model_id bigint, credential text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    chosen pgmodels.models;
    proj pgmodels.projects;
BEGIN
    SELECT m.* INTO chosen FROM pgmodels.models m WHERE m.id = _deploy_model.model_id;
    IF chosen.id IS NULL THEN
        RAISE EXCEPTION 'model % does not exist', _deploy_model.model_id USING ERRCODE = '42704';
    END IF;
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.id = chosen.project_id FOR UPDATE;
    PERFORM pgmodels._require_owner(caller, proj);
    INSERT INTO pgmodels.deployments (project_id, model_id, strategy) VALUES (chosen.project_id, chosen.id, 'model_id');
    RETURN chosen.id;
END
$$;
COMMENT ON FUNCTION pgmodels._deploy_model(bigint, text) IS 'internal: the core of deploy(model_id) (definer: only it writes the catalog)';

-- The deploy() functions run as the caller and pass its credential to the definer cores,
-- which check ownership; so they are open to PUBLIC: a role deploys only its own projects.
CREATE OR REPLACE FUNCTION pgmodels._deployed(model_id bigint, credential text)
RETURNS TABLE (project text, algorithm text, model_id bigint, version integer)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.name, m.algorithm, m.id, m.version FROM pgmodels.models m JOIN pgmodels.projects p ON p.id = m.project_id
     WHERE m.id = $1 AND pgmodels._may(pgmodels._verify_caller($2), p.id, 'owner')
$$;
COMMENT ON FUNCTION pgmodels._deployed(bigint, text) IS 'internal: the project, algorithm and version of a model id, for deploy()''s result';

CREATE OR REPLACE FUNCTION @extschema@.deploy(project_name text, strategy text, algorithm text DEFAULT NULL)
RETURNS TABLE (project text, strategy text, algorithm text, model_id bigint, version integer)
LANGUAGE sql VOLATILE
AS $$
    WITH d AS MATERIALIZED (SELECT pgmodels._deploy_strategy($1, $2, $3, pgmodels._credential()) AS id)
    SELECT r.project, $2, r.algorithm, r.model_id, r.version FROM d, pgmodels._deployed(d.id, pgmodels._credential()) r
$$;
COMMENT ON FUNCTION @extschema@.deploy(text, text, text) IS 'deploys a model of a project by strategy: best_score, most_recent or rollback, optionally among one algorithm''s models';

CREATE OR REPLACE FUNCTION @extschema@.deploy(model_id bigint)
RETURNS TABLE (project text, strategy text, algorithm text, model_id bigint, version integer)
LANGUAGE sql VOLATILE
AS $$
    WITH d AS MATERIALIZED (SELECT pgmodels._deploy_model($1, pgmodels._credential()) AS id)
    SELECT r.project, 'model_id'::text, r.algorithm, r.model_id, r.version FROM d, pgmodels._deployed(d.id, pgmodels._credential()) r
$$;
COMMENT ON FUNCTION @extschema@.deploy(bigint) IS 'deploys one model version, chosen by id';

-- sql/035_training.sql
-- train(): names and parameters follow PostgresML's pgml.train.
--
-- It runs with the caller's rights, so it reads only the rows and columns the caller may
-- read (row-level security included); it stores the result through
-- pgmodels._store_model(), which lets only the project's owner add versions. The core
-- pgmodels._train is executable by PUBLIC (train() calls it as the caller) and checks
-- itself that the caller may execute train(). Training runs in a child process, so
-- statement_timeout and pg_cancel_backend stop it, and the administrator's limits
-- (pgmodels.max_training_rows, max_trees, max_iterations, max_search_candidates, read
-- from the configuration files) are checked before it starts. Arguments left NULL reuse the project's previous training:
-- task, relation_name, y_column_name, test_size, test_sampling and preprocess always;
-- hyperparams, search, search_params and search_args only when algorithm is left NULL
-- too. On a project's first training the defaults are algorithm 'linear',
-- hyperparams '{}', test_size 0.25 and test_sampling 'stratified'.
-- materialize_snapshot copies the rows into a snapshot table first and trains on it (sql/120_families.sql).
CREATE OR REPLACE FUNCTION pgmodels._train(project_name text, task text, relation_name text, y_column_name text,
    algorithm text, hyperparams jsonb, search text, search_params jsonb, search_args jsonb, test_size real,
    test_sampling text, automatic_deploy boolean, preprocess jsonb, materialize_snapshot boolean)
RETURNS TABLE (project text, task text, algorithm text, deployed boolean, model_id bigint, version integer,
               runtime text, metrics jsonb)
LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return []
from pgmodels.training.udf import train; return train(project_name, task, relation_name, y_column_name, algorithm, hyperparams, search, search_params, search_args, test_size, test_sampling, automatic_deploy, preprocess, materialize_snapshot)
$$;
COMMENT ON FUNCTION pgmodels._train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean) IS 'internal: the core of train()';

CREATE OR REPLACE FUNCTION @extschema@.train(
    project_name text,
    task text DEFAULT NULL,
    relation_name text DEFAULT NULL,
    y_column_name text DEFAULT NULL,
    algorithm text DEFAULT NULL,
    hyperparams jsonb DEFAULT NULL,
    search text DEFAULT NULL,
    search_params jsonb DEFAULT NULL,
    search_args jsonb DEFAULT NULL,
    test_size real DEFAULT NULL,
    test_sampling text DEFAULT NULL,
    automatic_deploy boolean DEFAULT true,
    preprocess jsonb DEFAULT NULL,
    materialize_snapshot boolean DEFAULT false)
RETURNS TABLE (project text, task text, algorithm text, deployed boolean, model_id bigint, version integer,
               runtime text, metrics jsonb)
LANGUAGE sql VOLATILE
AS $$
    SELECT * FROM pgmodels._train($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
    UNION ALL  -- raises the error the core recorded, if any, once the core has run
    SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE pgmodels._raise_pending(NULL::boolean)
$$;
COMMENT ON FUNCTION @extschema@.train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean) IS 'trains a new model version of a project on a relation, converts it to ONNX, stores it and deploys it if it beats the deployed one';

-- sql/037_serving_native.sql
-- The one-row predict of a tree ensemble, in C (extension/src/native.c, the library
-- pgmodels_native). predict()'s array wrappers (sql/040_serving.sql) call it first: it
-- answers only from a registration the Python decision cache made in this backend for
-- the role the statement runs as, at the backend's current invalidation count, and
-- returns NULL otherwise, when the wrapper goes on to the Python cores as before. So it
-- decides nothing about privileges: see python_udfs/pgmodels/serving/native.py.
CREATE OR REPLACE FUNCTION pgmodels._predict_native(project_name text, model_id bigint, features anyarray)
RETURNS real
LANGUAGE c STABLE PARALLEL SAFE
AS '$libdir/pgmodels_native', 'pgmodels_predict_native';
COMMENT ON FUNCTION pgmodels._predict_native(text, bigint, anyarray) IS 'internal: predict() for one row of a tree ensemble the backend''s decision cache registered for the calling role, in C; NULL when there is none (the Python cores answer)';

-- predict_batch()'s answers from the same registration, one per row (NULL: ask the cores).
CREATE OR REPLACE FUNCTION pgmodels._predict_batch_native(project_name text, model_id bigint, features real[])
RETURNS real[]
LANGUAGE c STABLE PARALLEL SAFE
AS '$libdir/pgmodels_native', 'pgmodels_predict_batch_native';
COMMENT ON FUNCTION pgmodels._predict_batch_native(text, bigint, real[]) IS 'internal: predict_batch() for the rows of a tree ensemble the backend''s decision cache registered for the calling role, in C; NULL when there is none (the Python cores answer)';

-- sql/040_serving.sql
-- Serving: predict(), predict_proba(), predict_label(), predict_batch().
--
-- How a row is scored. The user-facing functions are one-line SQL wrappers that
-- PostgreSQL inlines into the calling query:
--
--   coalesce(core(project, id, features, pgmodels._stamp(), NULL),
--            core(project, id, features, pgmodels._stamp(),
--                 pgmodels._lookup(project, id, pgmodels._credential())),
--            pgmodels._raise_pending(NULL::<result type>))
--
-- The first call answers from the backend's cache when it already holds the model this
-- statement serves; that is every row but the first, and it costs no query. Otherwise
-- it returns NULL and the second call runs: _lookup (PL/pgSQL, definer) checks that the
-- calling role may predict with the project, activates the Python environment, reads
-- the model from the catalog and hands it to the cache itself (pgmodels._load, which
-- no other role may call), and the core then answers from the cache. The cores take no
-- model from their caller, so a forged catalog record has nowhere to go in. The lookup
-- is PL/pgSQL because PL/Python's queries open subtransactions, which parallel workers
-- may not; so predict is PARALLEL SAFE for real. All of it only reads, under the
-- statement's snapshot: a committed deploy is seen by the next statement (and, inside a
-- procedure, after the next COMMIT: the stamp changes with both), one statement never
-- mixes two versions, and it works on a read-only hot standby. Errors the Python side
-- records are raised by _raise_pending (see sql/020_environment.sql).
--
-- Features: an array is one row in feature order (a multi-dimensional array is read in
-- row-major order, so an image or a window of readings is one row); a row of a named
-- type (a table's row) and a jsonb object are matched by name, an array column of a
-- model trained on one by its name; an anonymous row, ROW(a, b, c), whose columns
-- PostgreSQL names f1, f2, ... in order, is positional, like an array (the wrapper hands
-- a record over as its to_json text, which keeps the column order, in a jsonb array
-- marked 'pgmodels:record'; a record with other column names, a subquery's row, is
-- matched by name).

-- The model a project serves (model_id 0) or a model by id, once the caller's privilege
-- is checked. Only definer functions call it.
CREATE OR REPLACE FUNCTION pgmodels._resolve(project_name text, model_id bigint, caller oid, privilege text,
                                             with_artifact boolean DEFAULT true)
RETURNS pgmodels.served_model
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    chosen bigint := nullif(model_id, 0);
    proj pgmodels.projects;
    served pgmodels.served_model;
BEGIN
    IF chosen IS NULL THEN
        SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.name = project_name;
        IF proj.id IS NULL THEN
            RAISE EXCEPTION 'project "%" does not exist', project_name USING ERRCODE = '42704',
                HINT = 'Train one with train(), or see pgmodels.overview for the projects there are.';
        END IF;
    ELSE
        SELECT p.* INTO proj FROM pgmodels.models m JOIN pgmodels.projects p ON p.id = m.project_id WHERE m.id = chosen;
        IF proj.id IS NULL THEN
            RAISE EXCEPTION 'model % does not exist', chosen USING ERRCODE = '42704';
        END IF;
    END IF;
    IF NOT pgmodels._may(caller, proj.id, privilege) THEN
        RAISE EXCEPTION 'permission denied for project "%"', proj.name
            USING ERRCODE = '42501',
                  DETAIL = format('Role "%s" has no %s privilege on it.', caller::regrole, privilege),
                  HINT = format('Its owner can grant it: SELECT grant_project(%L, %L, %L).', proj.name,
                                caller::regrole::text, privilege);
    END IF;
    IF chosen IS NULL THEN
        SELECT d.model_id INTO chosen FROM pgmodels.deployments d WHERE d.project_id = proj.id ORDER BY d.id DESC LIMIT 1;
        IF chosen IS NULL THEN
            RAISE EXCEPTION 'project "%" has no deployed model', project_name USING ERRCODE = '55000',
                HINT = 'Deploy one with deploy(), or train with automatic_deploy => true.';
        END IF;
    END IF;
    SELECT m.id, proj.name, m.version, m.task, m.runtime, CASE WHEN with_artifact THEN m.artifact END,
           m.artifact_sha256, m.feature_names,
           m.feature_types, m.labels::text, ARRAY(SELECT jsonb_array_elements_text(m.training -> 'nullable')),
           m.training -> 'array_features', m.algorithm = 'onnx',
           CASE WHEN jsonb_typeof(m.training -> 'work_per_row') = 'number'
                THEN (m.training ->> 'work_per_row')::double precision END,
           CASE WHEN with_artifact THEN m.native_trees END
      INTO served FROM pgmodels.models m WHERE m.id = chosen;
    RETURN served;
END
$$;
COMMENT ON FUNCTION pgmodels._resolve(text, bigint, oid, text, boolean) IS 'internal: the model a project serves (model_id 0) or a model by id, after checking the role''s privilege on its project; with_artifact false leaves the artifact out (the backend may have the model loaded already)';

-- Loads a model into the backend's cache as the one this statement serves for a project
-- or model id. Not for PUBLIC: only _lookup calls it, with what it read from the catalog.
-- once: the caller is not the session's own role (a SECURITY DEFINER function is
-- predicting): the model then serves only the call that loaded it, so that code the
-- session runs as itself cannot use the definer's lookup to reach the model. caller: the
-- role _lookup checked (an oid), whose decision the backend keeps for later statements
-- (see python_udfs/pgmodels/serving/cache.py).
CREATE OR REPLACE FUNCTION pgmodels._load(project_name text, model_id bigint, stamp double precision,
                                          model pgmodels.served_model, once boolean, caller bigint,
                                          rollout jsonb, candidate pgmodels.served_model)
RETURNS boolean
LANGUAGE plpython3u STABLE PARALLEL SAFE
AS $$
if 'pgmodels.active' not in GD: return None  # _lookup activates first; a direct call has nothing to load into
from pgmodels.serving.cache import load; return load(project_name, model_id, stamp, model, once, caller, rollout, candidate)
$$;
COMMENT ON FUNCTION pgmodels._load(text, bigint, double precision, pgmodels.served_model, boolean, bigint, jsonb, pgmodels.served_model) IS 'internal: loads a catalog model (and the candidate of the project''s active rollout, which the statement''s answers are then routed by) into the backend''s cache for this statement (or for one call) and keeps the decision for the role checked; called by _lookup only';

-- Without a rollout. Not for PUBLIC either.
CREATE OR REPLACE FUNCTION pgmodels._load(project_name text, model_id bigint, stamp double precision,
                                          model pgmodels.served_model, once boolean, caller bigint)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT pgmodels._load($1, $2, $3, $4, $5, $6, NULL, NULL) $$;
COMMENT ON FUNCTION pgmodels._load(text, bigint, double precision, pgmodels.served_model, boolean, bigint) IS 'internal: loads a catalog model into the backend''s cache for this statement (or for one call) and keeps the decision for the role checked, without a rollout';

-- 0.2.0's signature: loads without keeping a decision. Not for PUBLIC either.
CREATE OR REPLACE FUNCTION pgmodels._load(project_name text, model_id bigint, stamp double precision,
                                          model pgmodels.served_model, once boolean)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT pgmodels._load($1, $2, $3, $4, $5, NULL, NULL, NULL) $$;
COMMENT ON FUNCTION pgmodels._load(text, bigint, double precision, pgmodels.served_model, boolean) IS 'internal: loads a catalog model into the backend''s cache for this statement (or for one call), keeping no decision (0.2.0''s signature)';

-- Definer: the catalog is not readable by PUBLIC. The administrator's master switch:
-- revoking EXECUTE on it from PUBLIC takes predicting and exporting from every role it
-- is not granted to, whatever the projects' grants say.
CREATE OR REPLACE FUNCTION pgmodels._lookup(project_name text, model_id bigint, credential text, routed boolean)
RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid;
    once boolean;
    loaded boolean;
    ro pgmodels.rollout_runs;
    route jsonb;
BEGIN
    IF project_name IS NULL OR model_id IS NULL THEN
        RETURN NULL;
    END IF;
    caller := pgmodels._verify_caller(credential);
    -- the master switch is EXECUTE on the three-argument form, which calls this one
    IF NOT has_function_privilege(caller, 'pgmodels._lookup(text, bigint, text)', 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for function _lookup' USING ERRCODE = '42501',
            DETAIL = 'An administrator has revoked predicting from this role (EXECUTE on pgmodels._lookup(text, bigint, text)).';
    END IF;
    IF pgmodels._activate() IS NOT NULL THEN
        PERFORM pgmodels._raise_pending(NULL::integer);
    END IF;
    once := caller IS DISTINCT FROM (SELECT r.oid FROM pg_roles r WHERE r.rolname = coalesce(
                nullif(current_setting('role'), 'none'), session_user));
    -- The project's active rollout (sql/127_rollouts.sql): for a model id (a batch job's
    -- pinned version), only while that version is the rollout's champion.
    IF routed THEN
        IF model_id = 0 THEN
            SELECT r.* INTO ro FROM pgmodels.rollout_runs r JOIN pgmodels.projects p ON p.id = r.project_id
             WHERE p.name = project_name AND r.status = 'active';
        ELSE
            SELECT r.* INTO ro FROM pgmodels.rollout_runs r WHERE r.champion_id = model_id AND r.status = 'active';
        END IF;
        IF ro.id IS NOT NULL THEN
            route := jsonb_build_object('id', ro.id, 'mode', ro.mode, 'fraction', ro.fraction);
        END IF;
    END IF;
    -- Without the artifact first: reading and handing over its bytes costs most of a
    -- lookup, and the backend usually has the model loaded (by id and sha256) already.
    loaded := pgmodels._load(project_name, model_id, pgmodels._stamp(),
                             pgmodels._resolve(project_name, model_id, caller, 'predict', false), once, caller::bigint,
                             route, CASE WHEN route IS NOT NULL
                                         THEN pgmodels._resolve('', ro.candidate_id, caller, 'predict', false) END);
    IF loaded IS NOT NULL AND NOT loaded THEN
        loaded := pgmodels._load(project_name, model_id, pgmodels._stamp(),
                                 pgmodels._resolve(project_name, model_id, caller, 'predict', true), once, caller::bigint,
                                 route, CASE WHEN route IS NOT NULL
                                             THEN pgmodels._resolve('', ro.candidate_id, caller, 'predict', true) END);
    END IF;
    IF NOT coalesce(loaded, false) THEN
        PERFORM pgmodels._raise_pending(NULL::integer);
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION pgmodels._lookup(text, bigint, text, boolean) IS 'internal: checks that the caller may predict with a project (model_id 0) or a model, and loads it into the backend''s cache for this statement, with the project''s active rollout when routed (for a model id: while it is the rollout''s champion)';

-- Definer: the catalog is not readable by PUBLIC. The administrator's master switch:
-- revoking EXECUTE on it from PUBLIC takes predicting and exporting from every role it
-- is not granted to, whatever the projects' grants say. A project's answers are routed
-- by its active rollout; a model chosen by id is that model's own.
CREATE OR REPLACE FUNCTION pgmodels._lookup(project_name text, model_id bigint, credential text) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RETURN pgmodels._lookup(project_name, model_id, credential, model_id = 0); END $$;
COMMENT ON FUNCTION pgmodels._lookup(text, bigint, text) IS 'internal: checks that the caller may predict with a project (model_id 0) or a model, and loads it into the backend''s cache for this statement; revoke it from PUBLIC to turn predicting and exporting off for all but the roles granted it';

-- What the backends' kept decisions rest on (python_udfs/pgmodels/serving/cache.py):
-- every write to the tables a lookup reads queues an invalidation message, at commit only
-- (a rolled-back write queues nothing), that every backend counts when it next reads the
-- queue (PostgreSQL's SharedInvalidMessageCounter). The message names the written table
-- as a catalog that has no cache, so a backend does nothing with it but count it.
-- PL/Python for ctypes: PostgreSQL exports CacheInvalidateCatalog, which SQL cannot reach;
-- it only appends to the transaction's list of messages. Not a definer: the writers are
-- pgmodels' definer functions (and superusers).
CREATE OR REPLACE FUNCTION pgmodels._catalog_changed() RETURNS trigger
LANGUAGE plpython3u
AS $$
send = GD.get('pgmodels.catalog_changed')
if send is None:
    import ctypes
    try:
        send = ctypes.CDLL(None).CacheInvalidateCatalog
        send.argtypes, send.restype = [ctypes.c_uint], None
    except (OSError, AttributeError):  # then no backend keeps a decision either (serving/backend.py)
        send = False
    GD['pgmodels.catalog_changed'] = send
if send:
    send(int(TD['relid']))
return None
$$;
COMMENT ON FUNCTION pgmodels._catalog_changed() IS 'internal: a trigger on the serving catalog (projects, models, deployments, project_grants, rollout_runs): queues an invalidation message at commit, which ends every backend''s kept serving decisions';

DO $do$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['projects', 'models', 'deployments', 'project_grants'] LOOP
        EXECUTE format('CREATE OR REPLACE TRIGGER catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE '
                       'ON pgmodels.%I FOR EACH STATEMENT EXECUTE FUNCTION pgmodels._catalog_changed()', t);
        -- also where triggers are off (session_replication_role = replica: a logical
        -- replica's apply, a restore with triggers disabled)
        EXECUTE format('ALTER TABLE pgmodels.%I ENABLE ALWAYS TRIGGER catalog_changed', t);
    END LOOP;
END
$do$;

-- The forms features take in the user-facing wrappers (predict, predict_proba,
-- predict_label, with and without a key, explain_prediction): each SQL type and the
-- expression that hands it to a core (float8[] or jsonb). A row of a named type becomes
-- jsonb keyed by column; an anonymous ROW(...) keeps its column order (see above).
CREATE OR REPLACE FUNCTION pgmodels._feature_forms() RETURNS TABLE (sqltype text, cast_expr text)
LANGUAGE sql IMMUTABLE
AS $f$ VALUES
    ('real[]', '$2'), ('double precision[]', '$2'), ('numeric[]', '$2::float8[]'),
    ('integer[]', '$2::float8[]'), ('bigint[]', '$2::float8[]'), ('smallint[]', '$2::float8[]'),
    ('boolean[]', '$2::integer[]::float8[]'), ('jsonb', '$2'),
    ('anyelement', 'CASE WHEN pg_catalog.pg_typeof($2) = ''pg_catalog.record''::pg_catalog.regtype '
                   'THEN pg_catalog.jsonb_build_array(''pgmodels:record'', pg_catalog.to_json($2)::text) '
                   'ELSE pg_catalog.to_jsonb($2) END')
$f$;
COMMENT ON FUNCTION pgmodels._feature_forms() IS 'internal: the SQL types features may come as in the user-facing wrappers, and the expression handing each to a core';

-- The cores and the user-facing wrappers: for each answer (predict, predict_proba,
-- predict_label), the cores take features as float8[] (arrays) or jsonb (objects, and
-- rows, which the wrappers turn into jsonb since PL/Python takes no polymorphic
-- arguments); the wrappers exist for each way of naming the model (project name, model
-- id) and each features type. The wrappers are not STRICT, since coalesce is not, but
-- NULL in gives NULL out.
DO $do$
DECLARE
    answer record;
    target record;
    ftype record;
    core text;
BEGIN
    FOR answer IN SELECT * FROM (VALUES
        ('predict', 'real', 'the prediction: the class (its label if numeric, else its index) or the value'),
        ('predict_proba', 'real[]', 'the class probabilities, in the order of the model''s labels'),
        ('predict_label', 'text', 'the predicted class label as text (classification)')) AS a(name, rettype, what)
    LOOP
        -- real[] has a core of its own: it is the usual features column, and a cast per
        -- row to float8[] costs a few percent of a row's time
        FOREACH core IN ARRAY ARRAY['float8[]', 'float4[]', 'jsonb'] LOOP
            EXECUTE format(
                'CREATE OR REPLACE FUNCTION pgmodels.%I(project_name text, model_id bigint, features %s, stamp double precision, '
                'loaded boolean) RETURNS %s LANGUAGE plpython3u STABLE PARALLEL SAFE AS %L',
                '_' || answer.name, core, answer.rettype,
                format(E'f = GD.get(\'pgmodels.%1$s\')\n'
                       || E'if f is None and \'pgmodels.active\' in GD: from pgmodels.serving.predict import %1$s as f; GD[\'pgmodels.%1$s\'] = f\n'
                       || 'return f(project_name, model_id, features, stamp, loaded) if f else None', answer.name));
            EXECUTE format('COMMENT ON FUNCTION pgmodels.%I(text, bigint, %s, double precision, boolean) IS %L',
                '_' || answer.name, core, format('internal: the core of %s()', answer.name));
        END LOOP;
        FOR target IN SELECT * FROM (VALUES
            ('project_name text', '$1, 0', 'the deployed model of a project'),
            ('model_id bigint', '''''::text, $1', 'a model version chosen by id')) AS t(arg, pass, what)
        LOOP
            FOR ftype IN SELECT f.sqltype, f.cast_expr FROM pgmodels._feature_forms() f
            LOOP
                -- predict() from real[] and double precision[], the forms a features column
                -- usually takes: the same wrapper in C (extension/src/native.c), which also
                -- answers a tree ensemble's row itself, and costs no planning per statement
                IF answer.name = 'predict' AND ftype.sqltype IN ('real[]', 'double precision[]') THEN
                    EXECUTE format(
                        'CREATE OR REPLACE FUNCTION @extschema@.predict(%s, features %s) RETURNS real '
                        'LANGUAGE c STABLE PARALLEL SAFE AS %L, %L',
                        target.arg, ftype.sqltype, '$libdir/pgmodels_native',
                        format('pgmodels_predict_%s_%s', CASE WHEN target.arg LIKE 'model_id%' THEN 'id' ELSE 'name' END,
                               CASE ftype.sqltype WHEN 'real[]' THEN 'f4' ELSE 'f8' END));
                ELSE
                EXECUTE format(
                    'CREATE OR REPLACE FUNCTION @extschema@.%I(%s, %s %s) RETURNS %s '
                    'LANGUAGE sql STABLE PARALLEL SAFE AS %L',
                    answer.name, target.arg, CASE WHEN ftype.sqltype = 'anyelement' THEN '"row"' ELSE 'features' END,
                    ftype.sqltype, answer.rettype,
                    format('SELECT coalesce(%5$s pgmodels.%1$I(%2$s, %3$s, pgmodels._stamp(), NULL), '
                           'pgmodels.%1$I(%2$s, %3$s, pgmodels._stamp(), pgmodels._lookup(%2$s, pgmodels._credential())), '
                           'pgmodels._raise_pending(NULL::%4$s))',
                           '_' || answer.name, target.pass, ftype.cast_expr, answer.rettype,
                           -- a tree ensemble's one-row predict in C (sql/037_serving_native.sql)
                           CASE WHEN answer.name = 'predict' AND ftype.sqltype LIKE '%[]'
                                THEN format('pgmodels._predict_native(%s, %s),', target.pass, ftype.cast_expr) ELSE '' END));
                END IF;
                EXECUTE format('COMMENT ON FUNCTION @extschema@.%I(%s, %s) IS %L',
                    answer.name, split_part(target.arg, ' ', 2), ftype.sqltype,
                    format('%s for %s, from features given as %s', answer.what, target.what,
                           CASE ftype.sqltype WHEN 'anyelement' THEN 'a row (a table''s row matched by column name, an anonymous ROW(...) by position)'
                                              WHEN 'jsonb' THEN 'a jsonb object keyed by feature name (or an array in feature order)'
                                              ELSE 'an array in feature order' END));
            END LOOP;
        END LOOP;
    END LOOP;
END
$do$;

CREATE OR REPLACE FUNCTION pgmodels._predict_batch(project_name text, model_id bigint, features bytea, stamp double precision,
                                        loaded boolean)
RETURNS SETOF real LANGUAGE plpython3u STABLE PARALLEL SAFE ROWS 1000
AS $$
if 'pgmodels.active' not in GD: return []  # _lookup activates first: without it no model is loaded to answer
from pgmodels.serving.predict import predict_batch; return predict_batch(project_name, model_id, features, stamp, loaded)
$$;
COMMENT ON FUNCTION pgmodels._predict_batch(text, bigint, bytea, double precision, boolean) IS 'internal: the core of predict_batch(); features come as array_send(real[]), which Python reads in place';

CREATE OR REPLACE FUNCTION @extschema@.predict_batch(project_name text, features real[]) RETURNS SETOF real
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE ROWS 1000
AS $$
DECLARE
    answers real[] := pgmodels._predict_batch_native(project_name, 0, features);  -- a kept decision's, in C
    loaded boolean;
BEGIN
    IF answers IS NULL THEN
        -- the lookup's decision serves the rest of the statement: a tree ensemble's in C too
        loaded := pgmodels._lookup(project_name, 0, pgmodels._credential());
        answers := CASE WHEN loaded THEN pgmodels._predict_batch_native(project_name, 0, features) END;
    END IF;
    IF answers IS NOT NULL THEN
        RETURN QUERY SELECT pg_catalog.unnest(answers);
        RETURN;
    END IF;
    RETURN QUERY SELECT pgmodels._predict_batch(project_name, 0, pg_catalog.array_send(features), pgmodels._stamp(),
                                                 loaded);
    PERFORM pgmodels._raise_pending(NULL::integer);
END
$$;
COMMENT ON FUNCTION @extschema@.predict_batch(text, real[]) IS 'predictions for many rows at once, given flattened into one array (or as a two-dimensional array), one result per row';

CREATE OR REPLACE FUNCTION @extschema@.predict_batch(model_id bigint, features real[]) RETURNS SETOF real
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE ROWS 1000
AS $$
DECLARE
    answers real[] := pgmodels._predict_batch_native('', model_id, features);  -- a kept decision's, in C
    loaded boolean;
BEGIN
    IF answers IS NULL THEN
        -- the lookup's decision serves the rest of the statement: a tree ensemble's in C too
        loaded := pgmodels._lookup('', model_id, pgmodels._credential());
        answers := CASE WHEN loaded THEN pgmodels._predict_batch_native('', model_id, features) END;
    END IF;
    IF answers IS NOT NULL THEN
        RETURN QUERY SELECT pg_catalog.unnest(answers);
        RETURN;
    END IF;
    RETURN QUERY SELECT pgmodels._predict_batch('', model_id, pg_catalog.array_send(features), pgmodels._stamp(),
                                                 loaded);
    PERFORM pgmodels._raise_pending(NULL::integer);
END
$$;
COMMENT ON FUNCTION @extschema@.predict_batch(bigint, real[]) IS 'predictions of a model version chosen by id for many rows at once, given flattened into one array';

-- sql/045_vectorized.sql
-- Scoring a block of rows in one model run: the path batch jobs (and any other mode
-- that scores rows in bulk) share with predict_batch. A caller aggregates its rows in
-- SQL, the numeric features into one rows x features real[] passed as array_send()
-- bytes (Python reads them in place) and the text features into a rows x features
-- text[], and gets the answers back as arrays in the same row order, which it zips
-- with its keys (unnest ... WITH ORDINALITY). Like the other cores it answers only from
-- a model pgmodels._lookup loaded for this statement, so the caller writes
--   pgmodels._score_rows(project, 0, x, t, outputs, pgmodels._stamp(),
--                        pgmodels._lookup(project, 0, pgmodels._credential()))
-- and then PERFORM pgmodels._raise_pending(NULL::integer) (or checks for a NULL result).

CREATE OR REPLACE FUNCTION pgmodels._score_rows(project_name text, model_id bigint, numeric_features bytea,
                                                text_features text[], outputs text[], stamp double precision,
                                                loaded boolean)
RETURNS pgmodels.scored_rows LANGUAGE plpython3u STABLE PARALLEL SAFE
AS $$
if 'pgmodels.active' not in GD: return None  # _lookup activates first: without it no model is loaded to answer
from pgmodels.serving.predict import score_rows; return score_rows(project_name, model_id, numeric_features, text_features, outputs, stamp, loaded)
$$;
COMMENT ON FUNCTION pgmodels._score_rows(text, bigint, bytea, text[], text[], double precision, boolean) IS 'internal: scores a block of rows in one model run (numeric features as array_send of a rows x n real[], text features as a rows x m text[]); answers only from a model _lookup loaded for this statement';

-- The model a project serves, as a caller that may predict with it sees it: what a
-- batch job needs to read the right columns. Definer: the catalog is not readable by
-- PUBLIC; the privilege check is _resolve's.
CREATE OR REPLACE FUNCTION pgmodels._serving_model(project_name text, model_id bigint, credential text)
RETURNS TABLE (model_id bigint, project text, version integer, task text, feature_names text[],
               feature_types text[], nullable text[], array_features jsonb, labels jsonb)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (r).id, (r).project, (r).version, (r).task, (r).feature_names, (r).feature_types, (r).nullable,
           (r).array_features, (r).labels::jsonb
      FROM (SELECT pgmodels._resolve($1, $2, pgmodels._verify_caller($3), 'predict') AS r) s
$$;
COMMENT ON FUNCTION pgmodels._serving_model(text, bigint, text) IS 'internal: the deployed (model_id 0) or given model of a project, without its artifact, for a caller that may predict with it';

-- Raised in a batch chunk's SQL for a row whose array feature has the wrong length.
CREATE OR REPLACE FUNCTION pgmodels._bad_array_feature(feature text, expected integer, got integer) RETURNS real[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF got IS NULL THEN
        RAISE EXCEPTION 'array feature "%" is NULL', feature USING ERRCODE = '22004';
    END IF;
    RAISE EXCEPTION 'array feature "%" must have % elements, got %', feature, expected, got
        USING ERRCODE = '22023', DETAIL = 'The model was trained on arrays of that many elements (multi-dimensional ones read in row-major order).';
END
$$;
COMMENT ON FUNCTION pgmodels._bad_array_feature(text, integer, integer) IS 'internal: the error for an array feature of the wrong length in a block of rows';

-- sql/050_onnx.sql
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

-- sql/060_overview.sql
-- What is there: one row per model version, of the projects the current role owns or was
-- granted predict or export on (the view reads the catalog with its owner's rights and
-- filters by current_user; security_barrier, so that no condition of the caller's sees
-- a row before that filter has).
CREATE OR REPLACE VIEW pgmodels.overview WITH (security_barrier) AS
SELECT p.name AS project,
       m.id AS model_id,
       m.version,
       m.task,
       m.algorithm,
       m.runtime,
       pgmodels._key_metric(m.task, m.metrics) AS key_metric,
       m.metrics,
       (m.id = d.model_id) IS TRUE AS deployed,
       m.trained_at,
       m.trained_by,
       length(m.artifact) AS artifact_bytes,
       p.owner::text AS owner,
       m.training -> 'retrain' AS retrain
FROM pgmodels.models m
JOIN pgmodels.projects p ON p.id = m.project_id
LEFT JOIN LATERAL (SELECT d.model_id FROM pgmodels.deployments d
                   WHERE d.project_id = p.id ORDER BY d.id DESC LIMIT 1) d ON true
WHERE pgmodels._may(pgmodels._me(), p.id, 'use');
COMMENT ON VIEW pgmodels.overview IS 'one row per model version of the projects the current role may use: project, version, algorithm, key metric (f1 or r2), deployed or not, who trained it when, artifact size, owner, and for a version a monitor retrained: the model and drift report it answered (see pgmodels.history for every retrain decision)';
GRANT SELECT ON pgmodels.overview TO PUBLIC;

-- sql/065_modes.sql
-- What the deployment modes (batch jobs, streams) share in SQL: the checks their
-- definer cores make before they create anything.

-- Refuses a role without EXECUTE on a user-facing function: the cores are open to
-- PUBLIC, so they check that the caller may run the function they serve.
CREATE OR REPLACE FUNCTION pgmodels._require_grant(caller oid, signature text, what text, who text) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF NOT pg_catalog.has_function_privilege(caller, '@extschema@.' || signature, 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for function %', what USING ERRCODE = '42501',
            HINT = format('An administrator grants EXECUTE on %s() to the roles that %s.', what, who);
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._require_grant(oid, text, text, text) IS 'internal: raises unless the role may execute the user-facing function';

-- The names of jobs, streams and consumers: they end up in pg_cron entries, channels and
-- messages, so they stay plain. A project's name (kind 'project') is what people know a
-- model by, so it may hold any letters and inner spaces, but nothing that would let it pass
-- for another project's in the console, /metrics or a bundle: no leading or trailing
-- space, no two spaces in a row (a web page shows them as one), no whitespace but the
-- plain space (a tab, a no-break space), no control characters (Unicode category Cc) and
-- no invisible ones (category Cf and the other default-ignorable code points: zero-width
-- spaces and joiners, direction marks and overrides, byte order marks, variation
-- selectors, fillers, tags). A name that differs from an existing project's only in case
-- is refused where projects are made (pgmodels._check_new_project: that needs the
-- catalog).
CREATE OR REPLACE FUNCTION pgmodels._check_name(kind text, value text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
    -- E'' strings: their \u escapes mean the characters whatever standard_conforming_strings says
    control text := E'[\x01-\x1F\x7F]';
    space text;
    invisible text;
    at integer;
    ch text;
    shown text;
BEGIN
    IF kind = 'project' THEN
        -- the characters below exist only in Unicode: built from their code points (an escape
        -- in the text of this function would stop it compiling in a database in another
        -- encoding, which has its own control characters only)
        IF pg_catalog.getdatabaseencoding() = 'UTF8' THEN
            SELECT '[' || pg_catalog.string_agg(CASE WHEN r.a = r.b THEN pg_catalog.chr(r.a) ELSE pg_catalog.chr(r.a) || '-' || pg_catalog.chr(r.b) END, ''
                                     ORDER BY r.o) || ']'
              INTO control FROM ROWS FROM (pg_catalog.unnest(ARRAY[1, 127]), pg_catalog.unnest(ARRAY[31, 159])) WITH ORDINALITY AS r (a, b, o);
            SELECT '[' || pg_catalog.string_agg(CASE WHEN r.a = r.b THEN pg_catalog.chr(r.a) ELSE pg_catalog.chr(r.a) || '-' || pg_catalog.chr(r.b) END, ''
                                     ORDER BY r.o) || ']'
              INTO space FROM ROWS FROM (pg_catalog.unnest(ARRAY[160, 5760, 8192, 8232, 8233, 8239, 8287, 12288]),
                                         pg_catalog.unnest(ARRAY[160, 5760, 8202, 8232, 8233, 8239, 8287, 12288])) WITH ORDINALITY AS r (a, b, o);
            -- U+00AD U+034F U+0600-0605 U+061C U+06DD U+070F U+0890-0891 U+08E2 U+115F-1160 U+17B4-17B5
            -- U+180B-180F U+200B-200F U+202A-202E U+2060-206F U+3164 U+FE00-FE0F U+FEFF U+FFA0 U+FFF0-FFFB
            -- U+110BD U+110CD U+13430-1343F U+1BCA0-1BCA3 U+1D173-1D17A U+E0000-E0FFF
            SELECT '[' || pg_catalog.string_agg(CASE WHEN r.a = r.b THEN pg_catalog.chr(r.a) ELSE pg_catalog.chr(r.a) || '-' || pg_catalog.chr(r.b) END, ''
                                     ORDER BY r.o) || ']'
              INTO invisible
              FROM ROWS FROM (pg_catalog.unnest(ARRAY[173, 847, 1536, 1564, 1757, 1807, 2192, 2274, 4447, 6068, 6155, 8203, 8234, 8288, 12644,
                                65024, 65279, 65440, 65520, 69821, 69837, 78896, 113824, 119155, 917504]),
                          pg_catalog.unnest(ARRAY[173, 847, 1541, 1564, 1757, 1807, 2193, 2274, 4448, 6069, 6159, 8207, 8238, 8303, 12644,
                                65039, 65279, 65440, 65531, 69821, 69837, 78911, 113827, 119162, 921599]))
                   WITH ORDINALITY AS r (a, b, o);
        ELSE
            space := E'[\x01]';      -- nothing beyond the control characters: classes that match no
            invisible := E'[\x01]';  -- character the control class lets through
        END IF;
        IF value IS NULL OR value = '' OR length(value) > 200 THEN
            RAISE EXCEPTION 'invalid project name %', coalesce(quote_literal(left(value, 40) || CASE WHEN length(value) > 40 THEN '...' ELSE '' END), 'NULL')
                USING ERRCODE = '22023', DETAIL = 'A project name is 1 to 200 characters.';
        END IF;
        at := regexp_instr(value, control || '|' || space || '|' || invisible);
        IF at > 0 THEN
            ch := substr(value, at, 1);
            -- the name as it can be shown: each such character as <U+XXXX>
            shown := (SELECT string_agg(CASE WHEN c ~ (control || '|' || space || '|' || invisible)
                                             THEN format('<U+%s>', upper(lpad(to_hex(ascii(c)), 4, '0'))) ELSE c END,
                                        '' ORDER BY i)
                        FROM regexp_split_to_table(value, '') WITH ORDINALITY AS t (c, i));
            RAISE EXCEPTION 'invalid project name %', quote_literal(shown) USING ERRCODE = '22023',
                DETAIL = format('Character %s is U+%s, %s: a project name has no control characters, no invisible '
                                'or formatting characters and no whitespace but the plain space, so that it cannot '
                                'pass for another project''s name.', at, upper(lpad(to_hex(ascii(ch)), 4, '0')),
                                CASE WHEN ch ~ control THEN 'a control character'
                                     WHEN ch ~ space THEN 'whitespace other than the plain space'
                                     ELSE 'an invisible or formatting character' END),
                HINT = 'Use letters, digits, punctuation and single spaces between words.';
        ELSIF value ~ '^ | $' THEN
            RAISE EXCEPTION 'invalid project name %', quote_literal(value) USING ERRCODE = '22023',
                DETAIL = 'A project name does not begin or end with a space, so that it cannot pass for another project''s name.',
                HINT = format('Use %s.', quote_literal(btrim(value, ' ')));
        ELSIF strpos(value, '  ') > 0 THEN
            RAISE EXCEPTION 'invalid project name %', quote_literal(value) USING ERRCODE = '22023',
                DETAIL = 'A project name has no two spaces in a row: a web page shows them as one, so that it would pass for another project''s name.',
                HINT = format('Use %s.', quote_literal(regexp_replace(value, ' {2,}', ' ', 'g')));
        END IF;
        RETURN;
    END IF;
    IF value IS NULL OR value !~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION 'invalid % name %', kind, coalesce(quote_literal(value), 'NULL') USING ERRCODE = '22023',
            DETAIL = format('A %s name is 1 to 63 letters, digits, underscores, dots or hyphens.', kind);
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._check_name(text, text) IS 'internal: raises unless a job, stream or consumer name is 1 to 63 plain characters, or a project name (kind project) is 1 to 200 characters with no control, invisible or formatting characters and no whitespace but single plain spaces between words';

-- sql/070_batch_cron.sql
-- The functions and views of 070_batch_catalog.sql (created once: tables and types), which
-- every upgrade replays (CREATE OR REPLACE).

-- Whether a backend is still the one that started at that time (pids are reused).
-- Definer: pg_stat_activity hides other roles' backend_start.
CREATE OR REPLACE FUNCTION pgmodels._backend_alive(pid integer, backend_start timestamptz) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = $1 AND a.backend_start = $2)
$$;
COMMENT ON FUNCTION pgmodels._backend_alive(integer, timestamptz) IS 'internal: whether the backend with this pid is still the one that started at this time';

-- Whether pg_cron is installed in this database. pg_cron lives in one database of a
-- cluster (cron.database_name); in every other one the name "cron" is free, and a role
-- that may create schemas there could make a schema cron of its own, with a function
-- cron.schedule_in_database or a table cron.job: the definer functions below would run
-- its code as the extension's owner. So schema cron counts only when it is pg_cron's own:
-- a member of the extension pg_cron (which only a superuser installs, and adds to).
CREATE OR REPLACE FUNCTION pgmodels._cron_here() RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n
                     JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
                      AND d.objid = n.oid AND d.deptype = 'e'
                     JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_cron'
                    WHERE n.nspname = 'cron')
$$;
COMMENT ON FUNCTION pgmodels._cron_here() IS 'internal: whether pg_cron is installed in this database (schema cron is the extension pg_cron''s, not a schema someone made)';

-- The one helper over pg_cron, which runs each job's command in the database and as the
-- role its entry names. Definer, so that a role needs no privilege on pg_cron's schema:
-- the entry it makes is always for a role the caller verified (never taken from a user)
-- and a command the caller built. Not for PUBLIC.
CREATE OR REPLACE FUNCTION pgmodels._cron_schedule(entry_name text, schedule text, command text, role_oid oid)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cron_db text := current_setting('cron.database_name', true);
    here text := current_database();
    entry bigint;
    message text;
BEGIN
    IF NOT pgmodels._cron_here() OR to_regproc('cron.schedule_in_database') IS NULL THEN
        IF cron_db IS NULL THEN
            RAISE EXCEPTION 'pg_cron is not installed'
                USING ERRCODE = '55000',
                      DETAIL = 'A schedule needs pg_cron, which this server does not load.',
                      HINT = 'Add pg_cron to shared_preload_libraries, restart, run CREATE EXTENSION pg_cron in the database cron.database_name names, or create the job without a schedule and CALL run_batch_job() from your own scheduler.';
        END IF;
        IF cron_db = here THEN
            RAISE EXCEPTION 'pg_cron is not installed in database "%"', here
                USING ERRCODE = '55000',
                      HINT = 'A superuser runs CREATE EXTENSION pg_cron here.';
        END IF;
        RAISE EXCEPTION 'pg_cron runs in database "%", not in "%"', cron_db, here
            USING ERRCODE = '55000',
                  DETAIL = 'pg_cron keeps its jobs in one database of the cluster (cron.database_name), and schedules from there only.',
                  HINT = format('Create the job here without a schedule; then a superuser schedules it from database "%s" with: SELECT cron.schedule_in_database(%L, %L, %L, %L, %L); or set cron.database_name to "%s" if this is the only database with jobs.',
                                cron_db, entry_name, coalesce(schedule, '*/5 * * * *'), command, here,
                                role_oid::regrole::text, here);
    END IF;
    IF schedule IS NULL OR btrim(schedule) = '' THEN
        RAISE EXCEPTION 'invalid cron schedule ""' USING ERRCODE = '22023',
            HINT = 'Use cron syntax: five fields (minute hour day month weekday), for example ''*/5 * * * *''.';
    END IF;
    BEGIN
        entry := cron.schedule_in_database(entry_name, schedule, command, here, role_oid::regrole::text, true);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS message = MESSAGE_TEXT;
        IF message LIKE 'invalid schedule%' THEN
            RAISE EXCEPTION 'invalid cron schedule "%"', schedule USING ERRCODE = '22023',
                DETAIL = format('pg_cron %s refused it: %s.', (SELECT e.extversion FROM pg_extension e WHERE e.extname = 'pg_cron'), message),
                HINT = 'Use cron syntax: five fields (minute hour day month weekday), for example ''*/5 * * * *''; pg_cron 1.4 schedules to the minute, pg_cron 1.5 and later also take ''30 seconds''.';
        END IF;
        RAISE;
    END;
    RETURN entry;
END
$$;
COMMENT ON FUNCTION pgmodels._cron_schedule(text, text, text, oid) IS 'internal: registers a command with pg_cron, to run in this database as the given role (definer: the role needs no rights on pg_cron); not for PUBLIC';

CREATE OR REPLACE FUNCTION pgmodels._cron_unschedule(entry bigint) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- nested, so that nothing names pg_cron's schema where it is not installed (nor a
    -- schema cron someone made: pgmodels._cron_here)
    IF entry IS NOT NULL AND pgmodels._cron_here() AND to_regclass('cron.job') IS NOT NULL THEN
        IF EXISTS (SELECT 1 FROM cron.job j WHERE j.jobid = entry) THEN
            PERFORM cron.unschedule(entry);
        END IF;
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._cron_unschedule(bigint) IS 'internal: removes a pg_cron entry, if it is still there; not for PUBLIC';

-- pg_cron never purges cron.job_run_details; this purges the rows of one entry.
CREATE OR REPLACE FUNCTION pgmodels._cron_prune(entry bigint, keep interval) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF entry IS NOT NULL AND pgmodels._cron_here() AND to_regclass('cron.job_run_details') IS NOT NULL THEN
        IF true THEN  -- planned only when pg_cron is installed here
            DELETE FROM cron.job_run_details d WHERE d.jobid = entry AND d.end_time < now() - keep;
        END IF;
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._cron_prune(bigint, interval) IS 'internal: deletes a pg_cron entry''s run details older than keep (pg_cron keeps them forever); not for PUBLIC';

-- The pg_cron entry that runs a batch job scheduled by hand (with cron.schedule, or with
-- cron.schedule_in_database as _cron_schedule's hint says): in this database's cron.job,
-- the entry for this database whose command calls run_batch_job on the job, the active
-- one first; and pg_cron's database (cron.database_name). pg_cron keeps its entries in
-- that one database only: elsewhere there is no cron.job to read, and pgmodels.batch_jobs
-- says where pg_cron runs the job from once a run by it is seen. Definer: cron.job is
-- pg_cron's, and each role sees only its own entries there (the job's entry may be a
-- superuser's); it answers only for a job the caller owns (a credential says who), and
-- reads cron.job only where schema cron is pg_cron's own (_cron_here). It evaluates
-- nothing of a role's: the job's name goes into a built-in format().
CREATE OR REPLACE FUNCTION pgmodels._cron_entry(credential text, job_id bigint, OUT jobid bigint, OUT jobname text,
                                               OUT schedule text, OUT username text, OUT active boolean,
                                               OUT cron_database text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    job_name text;
BEGIN
    SELECT j.name INTO job_name FROM pgmodels.batch_job j WHERE j.id = job_id AND pg_has_role(caller, j.owner, 'USAGE');
    IF job_name IS NULL THEN
        RETURN;
    END IF;
    cron_database := current_setting('cron.database_name', true);
    IF pgmodels._cron_here() AND to_regclass('cron.job') IS NOT NULL THEN
        IF true THEN  -- planned only when pg_cron is installed here
            SELECT e.jobid, e.jobname, e.schedule, e.username, e.active
              INTO jobid, jobname, schedule, username, active
              FROM cron.job e
             WHERE e.database = current_database() AND strpos(e.command, format('run_batch_job(%L', job_name)) > 0
             ORDER BY e.active DESC, e.jobid
             LIMIT 1;
        END IF;
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._cron_entry(text, bigint) IS 'internal: the pg_cron entry in this database that runs a batch job its caller owns (scheduled by hand), and pg_cron''s database';

-- sql/071_batch_internal.sql
-- Batch jobs: the definer functions that write the catalog. The user's functions
-- (072) run as the caller, so that they read the source and create the output table
-- with the caller's rights, and pass a credential (pgmodels._credential()) that these
-- check; what these trust comes from the catalog and from the verified role, never
-- from the caller's arguments alone.

-- The tuning a job takes, checked before the catalog's constraints would be.
CREATE OR REPLACE FUNCTION pgmodels._batch_check_settings(chunk_rows integer, max_retries integer,
                                                          retry_delay interval, keep_runs interval)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF chunk_rows IS NOT NULL AND NOT chunk_rows BETWEEN 1 AND 1000000 THEN
        RAISE EXCEPTION 'chunk_rows must be between 1 and 1000000, got %', chunk_rows USING ERRCODE = '22023',
            DETAIL = 'A run commits after every chunk; a killed run loses at most one chunk''s work.';
    ELSIF max_retries IS NOT NULL AND NOT max_retries BETWEEN 0 AND 100 THEN
        RAISE EXCEPTION 'max_retries must be between 0 and 100, got %', max_retries USING ERRCODE = '22023';
    ELSIF retry_delay IS NOT NULL AND NOT (retry_delay >= '0'::interval AND retry_delay <= '1 hour'::interval) THEN
        RAISE EXCEPTION 'retry_delay must be between 0 and 1 hour, got %', retry_delay USING ERRCODE = '22023';
    ELSIF keep_runs IS NOT NULL AND keep_runs < '1 minute'::interval THEN
        RAISE EXCEPTION 'keep_runs must be at least 1 minute, got %', keep_runs USING ERRCODE = '22023';
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._batch_check_settings(integer, integer, interval, interval) IS 'internal: checks a batch job''s chunk size, retries and history retention';

CREATE OR REPLACE FUNCTION pgmodels._batch_create(credential text, job_name text, project_name text, source oid,
                                                  key_column name, output oid, incremental_column name,
                                                  outputs text[], chunk_rows integer, schedule text,
                                                  max_retries integer, retry_delay interval, keep_runs interval)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    proj pgmodels.projects;
    other text;
    job_id bigint;
    entry bigint;
BEGIN
    PERFORM pgmodels._require_grant(caller, 'create_batch_job(text, text, text, text, text, text, text, text[], integer, integer, interval, interval)',
                                    'create_batch_job', 'may schedule scoring');
    PERFORM pgmodels._batch_check_settings(chunk_rows, max_retries, retry_delay, keep_runs);
    PERFORM pgmodels._check_name('batch job', job_name);
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.name = project_name;
    IF proj.id IS NULL THEN
        RAISE EXCEPTION 'project "%" does not exist', project_name USING ERRCODE = '42704';
    ELSIF NOT pgmodels._may(caller, proj.id, 'predict') THEN
        RAISE EXCEPTION 'permission denied for project "%"', project_name USING ERRCODE = '42501',
            DETAIL = format('Role "%s" has no predict privilege on it.', caller::regrole);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = source AND c.relkind IN ('r', 'p', 'v', 'm', 'f'))
       OR NOT has_column_privilege(caller, source, key_column, 'SELECT')
       OR (incremental_column IS NOT NULL AND NOT has_column_privilege(caller, source, incremental_column, 'SELECT')) THEN
        RAISE EXCEPTION 'permission denied for relation %', source::regclass USING ERRCODE = '42501',
            DETAIL = 'A batch job reads its source with the rights of the role that creates it.';
    END IF;
    -- every column the deployed model reads (array features are read whole)
    IF EXISTS (SELECT 1 FROM unnest((pgmodels._resolve(project_name, 0, caller, 'predict')).feature_names) f
                WHERE NOT has_column_privilege(caller, source, regexp_replace(f, '\[[0-9]+\]$', ''), 'SELECT')) THEN
        RAISE EXCEPTION 'permission denied for relation %', source::regclass USING ERRCODE = '42501',
            DETAIL = 'A batch job reads its source''s feature columns with the rights of the role that creates it.';
    END IF;
    IF output = source OR NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = output AND c.relkind IN ('r', 'p')
                                         AND pg_has_role(caller, c.relowner, 'USAGE')) THEN
        RAISE EXCEPTION 'must be owner of table %', output::regclass USING ERRCODE = '42501',
            DETAIL = 'A batch job writes only an output table of its own role.';
    END IF;
    IF EXISTS (SELECT 1 FROM pgmodels.batch_job j WHERE j.name = job_name) THEN
        RAISE EXCEPTION 'batch job "%" already exists', job_name USING ERRCODE = '42710',
            HINT = 'Pick another name, or drop_batch_job() the old one first.';
    END IF;
    SELECT j.name INTO other FROM pgmodels.batch_job j WHERE j.output = _batch_create.output;
    IF other IS NOT NULL THEN
        RAISE EXCEPTION 'table % is already the output of batch job "%"', output::regclass, other
            USING ERRCODE = '42710', HINT = 'Give each job an output table of its own.';
    END IF;
    INSERT INTO pgmodels.batch_job (name, owner, project_id, source, key_column, output, incremental_column, outputs,
                                    chunk_rows, max_retries, retry_delay, keep_runs)
    VALUES (job_name, caller::regrole, proj.id, source, key_column, output, incremental_column, outputs,
            chunk_rows, max_retries, retry_delay, keep_runs)
    RETURNING id INTO job_id;
    IF schedule IS NOT NULL THEN
        entry := pgmodels._batch_schedule(job_id, schedule);
    END IF;
    RETURN job_id;
END
$$;
COMMENT ON FUNCTION pgmodels._batch_create(text, text, text, oid, name, oid, name, text[], integer, text, integer, interval, interval) IS 'internal: the core of create_batch_job() (definer: it writes the catalog and schedules with pg_cron as the verified caller)';

-- A job's pg_cron entry: unique in the cluster (pg_cron keys entries by name and role,
-- and replaces an entry of the same name), and the same for the same job name.
CREATE OR REPLACE FUNCTION pgmodels._batch_cron_name(job_name text) RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT format('pgmodels_batch:%s:%s', (SELECT d.oid FROM pg_catalog.pg_database d
                                             WHERE d.datname = pg_catalog.current_database()),
                  pg_catalog.left(pg_catalog.md5($1), 20))
$$;
COMMENT ON FUNCTION pgmodels._batch_cron_name(text) IS 'internal: the name of a batch job''s pg_cron entry';

-- Schedules a job's run with pg_cron, as the job's owner. The entry's name is unique in
-- the cluster (pg_cron replaces an entry of the same name and role).
CREATE OR REPLACE FUNCTION pgmodels._batch_schedule(job_id bigint, schedule text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job pgmodels.batch_job;
    entry bigint;
BEGIN
    SELECT j.* INTO STRICT job FROM pgmodels.batch_job j WHERE j.id = job_id FOR UPDATE;
    PERFORM pgmodels._cron_unschedule(job.cron_job_id);
    entry := pgmodels._cron_schedule(pgmodels._batch_cron_name(job.name),
                                     schedule, format('CALL %I.run_batch_job(%L::text)', '@extschema@', job.name), job.owner);
    UPDATE pgmodels.batch_job j SET schedule = _batch_schedule.schedule, cron_job_id = entry WHERE j.id = job.id;
    RETURN entry;
END
$$;
COMMENT ON FUNCTION pgmodels._batch_schedule(bigint, text) IS 'internal: (re)schedules a batch job with pg_cron as its owner; not for PUBLIC';

-- The job a caller may act on. For a run, the caller must be the job's owner itself: a
-- run reads and writes with exactly its owner's rights. To alter or drop, a member of
-- the owner will do, as for tables.
CREATE OR REPLACE FUNCTION pgmodels._batch_owned(credential text, job_name text, to_run boolean)
RETURNS pgmodels.batch_job
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    job pgmodels.batch_job;
BEGIN
    SELECT j.* INTO job FROM pgmodels.batch_job j WHERE j.name = job_name;
    IF job.id IS NULL THEN
        RAISE EXCEPTION 'batch job "%" does not exist', job_name USING ERRCODE = '42704',
            HINT = 'See pgmodels.batch_jobs for the jobs you own.';
    END IF;
    IF to_run AND caller <> job.owner THEN
        RAISE EXCEPTION 'batch job "%" runs as role "%"', job_name, job.owner USING ERRCODE = '42501',
            DETAIL = 'A job reads and writes with the rights of the role that created it, and runs only as that role.',
            HINT = format('Log in as role "%s" to run it, or let pg_cron run it (a SET ROLE from a more privileged session would let the job''s code RESET ROLE).', job.owner);
    ELSIF NOT to_run AND NOT pg_has_role(caller, job.owner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of batch job "%"', job_name USING ERRCODE = '42501',
            DETAIL = format('Batch job "%s" belongs to role "%s".', job_name, job.owner);
    END IF;
    RETURN job;
END
$$;
COMMENT ON FUNCTION pgmodels._batch_owned(text, text, boolean) IS 'internal: a batch job its caller owns (to run it: is), or an error';

CREATE OR REPLACE FUNCTION pgmodels._batch_alter(credential text, job_name text, schedule text, unschedule boolean,
                                                 chunk_rows integer, max_retries integer, retry_delay interval,
                                                 keep_runs interval)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job pgmodels.batch_job := pgmodels._batch_owned(credential, job_name, false);
BEGIN
    PERFORM pgmodels._require_grant(pgmodels._verify_caller(credential), 'alter_batch_job(text, text, integer, integer, interval, interval, boolean)',
                                    'alter_batch_job', 'may schedule scoring');
    IF schedule IS NOT NULL AND unschedule THEN
        RAISE EXCEPTION 'a schedule and unschedule => true contradict each other' USING ERRCODE = '22023';
    END IF;
    PERFORM pgmodels._batch_check_settings(chunk_rows, max_retries, retry_delay, keep_runs);
    UPDATE pgmodels.batch_job j
       SET chunk_rows = coalesce(_batch_alter.chunk_rows, j.chunk_rows),
           max_retries = coalesce(_batch_alter.max_retries, j.max_retries),
           retry_delay = coalesce(_batch_alter.retry_delay, j.retry_delay),
           keep_runs = coalesce(_batch_alter.keep_runs, j.keep_runs)
     WHERE j.id = job.id;
    IF unschedule THEN
        PERFORM pgmodels._cron_unschedule(job.cron_job_id);
        UPDATE pgmodels.batch_job j SET schedule = NULL, cron_job_id = NULL WHERE j.id = job.id;
    ELSIF schedule IS NOT NULL THEN
        PERFORM pgmodels._batch_schedule(job.id, schedule);
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._batch_alter(text, text, text, boolean, integer, integer, interval, interval) IS 'internal: the core of alter_batch_job() (definer: it writes the catalog and pg_cron''s)';

CREATE OR REPLACE FUNCTION pgmodels._batch_drop(credential text, job_name text) RETURNS regclass
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job pgmodels.batch_job := pgmodels._batch_owned(credential, job_name, false);
BEGIN
    PERFORM pgmodels._cron_unschedule(job.cron_job_id);
    DELETE FROM pgmodels.batch_job j WHERE j.id = job.id;
    RETURN job.output;
END
$$;
COMMENT ON FUNCTION pgmodels._batch_drop(text, text) IS 'internal: the core of drop_batch_job(): unschedules and forgets a job, returns its output table';

-- A run's record. A run claims its job (runner_pid, runner_start, committed with the
-- run's first commit); while that backend lives, any other run of the job is recorded
-- as skipped. A 'running' run whose backend is gone was interrupted: it is marked failed.
-- Nobody but a run of the job's owner can claim a job, so no other role can block it.
CREATE OR REPLACE FUNCTION pgmodels._batch_run_begin(credential text, job_name text, status text, mode text,
                                                     resumed_from bigint, attempt integer, triggered_by text,
                                                     model_id bigint, model_version integer, low_watermark text,
                                                     high_watermark text, cursor_key text, cursor_value text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job pgmodels.batch_job := pgmodels._batch_owned(credential, job_name, true);
    me timestamptz := (SELECT a.backend_start FROM pg_stat_activity a WHERE a.pid = pg_backend_pid());
    run_id bigint;
BEGIN
    IF status = 'claim' THEN  -- a run starting: claim the job, or be skipped
        UPDATE pgmodels.batch_job j SET runner_pid = pg_backend_pid(), runner_start = me
         WHERE j.id = job.id AND (j.runner_pid IS NULL OR (j.runner_pid, j.runner_start) = (pg_backend_pid(), me)
                                  OR NOT pgmodels._backend_alive(j.runner_pid, j.runner_start));
        IF NOT FOUND THEN
            status := 'skipped';
        ELSE
            RETURN NULL;
        END IF;
    ELSIF status = 'running' THEN
        IF job.runner_pid IS DISTINCT FROM pg_backend_pid() OR job.runner_start IS DISTINCT FROM me THEN
            RAISE EXCEPTION 'batch job "%" is not claimed by this session', job_name USING ERRCODE = '55000';
        END IF;
        UPDATE pgmodels.batch_run r
           SET status = 'failed', finished_at = coalesce(r.finished_at, now()),
               error = 'the run was interrupted: its backend ended before it finished', error_sqlstate = '57P01'
         WHERE r.job_id = job.id AND r.status = 'running';
    ELSIF status <> 'skipped' THEN
        RAISE EXCEPTION 'a run begins as claim, running or skipped' USING ERRCODE = '22023';
    END IF;
    INSERT INTO pgmodels.batch_run (job_id, status, mode, resumed_from, attempt, triggered_by, model_id, model_version,
                                    low_watermark, high_watermark, cursor_key, cursor_value, pid, backend_start,
                                    finished_at, error)
    VALUES (job.id, status, mode, resumed_from, attempt, triggered_by, model_id, model_version, low_watermark,
            high_watermark, cursor_key, cursor_value, pg_backend_pid(), me,
            CASE WHEN status = 'skipped' THEN clock_timestamp() END,
            CASE WHEN status = 'skipped' THEN 'another run of the job was still running' END)
    RETURNING id INTO run_id;
    RETURN run_id;
END
$$;
COMMENT ON FUNCTION pgmodels._batch_run_begin(text, text, text, text, bigint, integer, text, bigint, integer, text, text, text, text) IS 'internal: claims a batch job for this session''s run (or records a skipped run), and records a run''s start, for the job''s owner';

-- Lets go of a job this session claimed (at the end of a run, whatever its outcome).
CREATE OR REPLACE FUNCTION pgmodels._batch_release(credential text, job_name text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job pgmodels.batch_job := pgmodels._batch_owned(credential, job_name, true);
BEGIN
    UPDATE pgmodels.batch_job j SET runner_pid = NULL, runner_start = NULL
     WHERE j.id = job.id AND j.runner_pid = pg_backend_pid();
END
$$;
COMMENT ON FUNCTION pgmodels._batch_release(text, text) IS 'internal: ends this session''s claim on a batch job';

CREATE OR REPLACE FUNCTION pgmodels._batch_run_chunk(credential text, run_id bigint, scored bigint, cursor_key text,
                                                     cursor_value text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE pgmodels.batch_run r
       SET rows_scored = r.rows_scored + scored, chunks = r.chunks + 1,
           cursor_key = _batch_run_chunk.cursor_key, cursor_value = _batch_run_chunk.cursor_value
      FROM pgmodels.batch_job j
     WHERE r.id = run_id AND j.id = r.job_id AND r.status = 'running' AND r.pid = pg_backend_pid()
       AND j.owner = pgmodels._verify_caller(credential);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'batch run % is not running in this session', run_id USING ERRCODE = '55000';
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._batch_run_chunk(text, bigint, bigint, text, text) IS 'internal: records a committed chunk of a running batch run';

CREATE OR REPLACE FUNCTION pgmodels._batch_run_end(credential text, run_id bigint, status text, removed bigint,
                                                   error text, error_sqlstate text, error_detail text, error_hint text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    run pgmodels.batch_run;
    job pgmodels.batch_job;
BEGIN
    IF status NOT IN ('succeeded', 'failed') THEN
        RAISE EXCEPTION 'a run ends as succeeded or failed' USING ERRCODE = '22023';
    END IF;
    SELECT r.* INTO run FROM pgmodels.batch_run r JOIN pgmodels.batch_job j ON j.id = r.job_id
     WHERE r.id = run_id AND r.status = 'running' AND r.pid = pg_backend_pid()
       AND j.owner = pgmodels._verify_caller(credential)
       FOR UPDATE OF r;
    IF run.id IS NULL THEN
        RAISE EXCEPTION 'batch run % is not running in this session', run_id USING ERRCODE = '55000';
    END IF;
    UPDATE pgmodels.batch_run r
       SET status = _batch_run_end.status, finished_at = clock_timestamp(), rows_removed = coalesce(removed, 0),
           error = _batch_run_end.error, error_sqlstate = _batch_run_end.error_sqlstate,
           error_detail = _batch_run_end.error_detail, error_hint = _batch_run_end.error_hint
     WHERE r.id = run.id;
    IF status = 'succeeded' THEN
        UPDATE pgmodels.batch_job j
           SET scored_model_id = CASE WHEN run.mode = 'full' THEN run.model_id ELSE j.scored_model_id END,
               watermark = coalesce(run.high_watermark, j.watermark)
         WHERE j.id = run.job_id
        RETURNING j.* INTO job;
    ELSE
        SELECT j.* INTO job FROM pgmodels.batch_job j WHERE j.id = run.job_id;
    END IF;
    -- bounded history: ours and pg_cron's, keeping the newest run whatever its age
    DELETE FROM pgmodels.batch_run r
     WHERE r.job_id = job.id AND r.id < run.id AND r.started_at < now() - job.keep_runs;
    PERFORM pgmodels._cron_prune(job.cron_job_id, job.keep_runs);
END
$$;
COMMENT ON FUNCTION pgmodels._batch_run_end(text, bigint, text, bigint, text, text, text, text) IS 'internal: records how a batch run ended, moves the job''s watermark after a success and prunes old history (ours and pg_cron''s)';

-- sql/072_batch.sql
-- Batch deployment: create_batch_job(), run_batch_job(), alter_batch_job(),
-- drop_batch_job(), and the views pgmodels.batch_jobs and pgmodels.batch_runs.
--
-- A job scores a relation (a table or a view) with a project's deployed model into an
-- output table that holds one current prediction per key, on a pg_cron schedule or by
-- hand. It runs with the rights of the role that created it: pg_cron connects as that
-- role, and a run by hand must be made as it. A run goes through the source in key order
-- (or, for an incremental run, in the order of its column, then key), a chunk at a time:
-- one statement reads the chunk, scores it in one model run (pgmodels._score_rows) and
-- upserts it, and the run commits after every chunk, recording where it got to. A run
-- that dies loses at most its last chunk; the next run goes on from there. Two runs of
-- a job never overlap: a run claims the job in the catalog (its backend's pid and start
-- time), and a run that finds the claim's backend alive is recorded as skipped. The work is in python_udfs/pgmodels/batch/.

CREATE OR REPLACE FUNCTION pgmodels._create_batch_job(job_name text, project_name text, relation_name text,
    key_column text, output_table text, schedule text, incremental_column text, outputs text[], chunk_rows integer,
    max_retries integer, retry_delay interval, keep_runs interval)
RETURNS bigint LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.batch.jobs import create; return create(job_name, project_name, relation_name, key_column, output_table, schedule, incremental_column, outputs, chunk_rows, max_retries, retry_delay, keep_runs)
$$;
COMMENT ON FUNCTION pgmodels._create_batch_job(text, text, text, text, text, text, text, text[], integer, integer, interval, interval) IS 'internal: the core of create_batch_job(), run as the caller';

CREATE OR REPLACE FUNCTION @extschema@.create_batch_job(
    job_name text,
    project_name text,
    relation_name text,
    key_column text,
    output_table text,
    schedule text DEFAULT NULL,
    incremental_column text DEFAULT NULL,
    outputs text[] DEFAULT ARRAY['prediction'],
    chunk_rows integer DEFAULT 10000,
    max_retries integer DEFAULT 2,
    retry_delay interval DEFAULT '10 seconds',
    keep_runs interval DEFAULT '14 days')
RETURNS bigint LANGUAGE sql VOLATILE
AS $$
    SELECT coalesce(pgmodels._create_batch_job($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12),
                    pgmodels._raise_pending(NULL::bigint))
$$;
COMMENT ON FUNCTION @extschema@.create_batch_job(text, text, text, text, text, text, text, text[], integer, integer, interval, interval) IS 'registers a batch scoring job: a project''s deployed model scores a relation into an output table keyed like it (created when missing), on a pg_cron schedule or by CALL run_batch_job(); returns the job id';

CREATE OR REPLACE PROCEDURE pgmodels._run_batch_job(job_name text)
LANGUAGE plpython3u
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return
from pgmodels.batch.run import run; run(job_name)
$$;
COMMENT ON PROCEDURE pgmodels._run_batch_job(text) IS 'internal: the core of run_batch_job()';

-- No SET clause and no EXCEPTION block: either would forbid the COMMITs of the core.
CREATE OR REPLACE PROCEDURE @extschema@.run_batch_job(job_name text)
LANGUAGE plpgsql
AS $$
BEGIN
    CALL pgmodels._run_batch_job(job_name);
    PERFORM pgmodels._raise_pending(NULL::integer);
END
$$;
COMMENT ON PROCEDURE @extschema@.run_batch_job(text) IS 'runs a batch job now, as pg_cron does: scores the source a chunk at a time, committing after each, and records the run in pgmodels.batch_runs; for the job''s owner, outside a transaction block';

CREATE OR REPLACE FUNCTION @extschema@.alter_batch_job(job_name text, schedule text DEFAULT NULL,
    chunk_rows integer DEFAULT NULL, max_retries integer DEFAULT NULL, retry_delay interval DEFAULT NULL,
    keep_runs interval DEFAULT NULL, unschedule boolean DEFAULT false)
RETURNS void LANGUAGE sql VOLATILE
AS $$ SELECT pgmodels._batch_alter(pgmodels._credential(), $1, $2, $7, $3, $4, $5, $6) $$;
COMMENT ON FUNCTION @extschema@.alter_batch_job(text, text, integer, integer, interval, interval, boolean) IS 'changes a batch job''s schedule (or removes it with unschedule => true), chunk size, retries or history retention; arguments left NULL keep their value';

CREATE OR REPLACE FUNCTION @extschema@.drop_batch_job(job_name text, drop_output boolean DEFAULT false)
RETURNS void LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    output regclass := pgmodels._batch_drop(pgmodels._credential(), job_name);
BEGIN
    IF drop_output AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = output) THEN  -- as its owner
        EXECUTE format('DROP TABLE %s', output);
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.drop_batch_job(text, boolean) IS 'unschedules and removes a batch job and its run history; keeps its output table unless drop_output => true';

CREATE OR REPLACE VIEW pgmodels.batch_runs WITH (security_barrier) AS
SELECT r.id AS run_id,
       j.name AS job,
       p.name AS project,
       CASE WHEN l.dead THEN 'failed' ELSE r.status END AS status,
       r.mode,
       r.triggered_by,
       r.attempt,
       r.resumed_from,
       r.started_at,
       r.finished_at,
       coalesce(r.finished_at, clock_timestamp()) - r.started_at AS duration,
       r.rows_scored,
       r.rows_removed,
       r.chunks,
       round((r.rows_scored / greatest(extract(epoch FROM coalesce(r.finished_at, clock_timestamp()) - r.started_at),
                                       0.001))::numeric, 1) AS rows_per_second,
       r.model_id,
       r.model_version,
       r.low_watermark,
       r.high_watermark,
       r.cursor_key,
       r.cursor_value,
       CASE WHEN l.dead THEN 'the run was interrupted: its backend ended before it finished' ELSE r.error END AS error,
       CASE WHEN l.dead THEN '57P01' ELSE r.error_sqlstate END AS error_sqlstate,
       r.error_detail,
       r.error_hint,
       r.pid,
       j.owner::text AS owner
FROM pgmodels.batch_run r
JOIN pgmodels.batch_job j ON j.id = r.job_id
JOIN pgmodels.projects p ON p.id = j.project_id
CROSS JOIN LATERAL (SELECT r.status = 'running' AND NOT pgmodels._backend_alive(r.pid, r.backend_start) AS dead) l
WHERE pg_catalog.pg_has_role(pgmodels._me(), j.owner, 'USAGE');
COMMENT ON VIEW pgmodels.batch_runs IS 'one row per run of the batch jobs the current role owns: status (running, succeeded, failed, skipped), rows scored so far, chunks, rows/s, the model that scored them, what triggered it, the error; a running run''s progress is visible from any session';
GRANT SELECT ON pgmodels.batch_runs TO PUBLIC;

CREATE OR REPLACE VIEW pgmodels.batch_jobs WITH (security_barrier) AS
SELECT j.name AS job,
       j.id AS job_id,
       j.owner::text AS owner,
       p.name AS project,
       j.source::text AS source,
       j.key_column,
       j.output::text AS output,
       j.incremental_column,
       j.outputs,
       coalesce(j.schedule, hand.schedule) AS schedule,
       coalesce(j.cron_job_id, hand.jobid) AS cron_job_id,
       j.chunk_rows,
       j.max_retries,
       j.retry_delay,
       j.keep_runs,
       j.watermark,
       j.scored_model_id,
       last.run_id AS last_run_id,
       last.started_at AS last_run_at,
       last.status AS last_status,
       last.rows_scored AS last_rows_scored,
       last.error AS last_error,
       j.created_at,
       -- the pg_cron entry that runs it: pgmodels', or one made by hand here (its schedule and
       -- id above), or, from another database, where pg_cron runs it from
       CASE WHEN j.cron_job_id IS NOT NULL THEN pg_catalog.format('pg_cron job %s in this database', j.cron_job_id)
            WHEN hand.jobid IS NOT NULL
            THEN pg_catalog.format('pg_cron job %s%s in this database, scheduled by hand, as role %s%s', hand.jobid,
                                   ' "' || hand.jobname || '"', hand.username,
                                   CASE WHEN NOT hand.active THEN ' (inactive)' ELSE '' END)
            WHEN by_cron.last_at IS NOT NULL AND hand.cron_database <> pg_catalog.current_database()
            THEN pg_catalog.format('pg_cron runs it from database "%s" (last at %s); its entry is there: '
                                   'SELECT * FROM cron.job WHERE database = %L AND command LIKE %L',
                                   hand.cron_database, by_cron.last_at,
                                   pg_catalog.current_database(),
                                   '%run_batch_job(' || pg_catalog.quote_literal(j.name) || '%')
       END AS cron_entry
FROM pgmodels.batch_job j
JOIN pgmodels.projects p ON p.id = j.project_id
LEFT JOIN LATERAL (SELECT r.run_id, r.started_at, r.status, r.rows_scored, r.error FROM pgmodels.batch_runs r
                    WHERE r.job = j.name AND r.status <> 'skipped' ORDER BY r.run_id DESC LIMIT 1) last ON true
LEFT JOIN LATERAL (SELECT e.* FROM pgmodels._cron_entry(pgmodels._credential(), j.id) e
                    WHERE j.cron_job_id IS NULL) hand ON true
LEFT JOIN LATERAL (SELECT pg_catalog.max(r.started_at) AS last_at FROM pgmodels.batch_run r
                    WHERE r.job_id = j.id AND r.triggered_by = 'pg_cron') by_cron ON true
WHERE pg_catalog.pg_has_role(pgmodels._me(), j.owner, 'USAGE');
COMMENT ON VIEW pgmodels.batch_jobs IS 'one row per batch job the current role owns: project, source, output, schedule and the pg_cron entry that runs it (pgmodels'' own, or one made by hand), watermark, and its last run (not counting skipped ones)';
GRANT SELECT ON pgmodels.batch_jobs TO PUBLIC;

-- sql/075_stream_partition.sql
-- The functions and views of 075_stream_catalog.sql (created once: tables and types), which
-- every upgrade replays (CREATE OR REPLACE).

-- The partition of an event (the worker's read inlines the same expression).
CREATE OR REPLACE FUNCTION pgmodels._event_part(key text, id bigint, partitions integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN $3 <= 1 THEN 0
             ELSE ((pg_catalog.hashtextextended(coalesce($1, $2::text), 0) % $3 + $3) % $3)::integer END $$;
COMMENT ON FUNCTION pgmodels._event_part(text, bigint, integer) IS 'internal: the partition of a consumer''s events an event belongs to: by its key (else its id)';

-- sql/076_stream_internal.sql
-- Streams: the definer functions. They create and drop each stream's private log and
-- its capture trigger, write the catalog, and hand a consumer's owner its position; the
-- user's functions (077) run as the caller and pass a credential.

CREATE OR REPLACE FUNCTION pgmodels._stream_log(stream_id bigint, child integer DEFAULT NULL) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT 'stream_' || stream_id || '_log' || coalesce('_' || child, '') $$;
COMMENT ON FUNCTION pgmodels._stream_log(bigint, integer) IS 'internal: the name (in schema pgmodels) of a stream''s log, or of one of its three children';

-- Whether a role may read a stream's events: it may read the stream's table, and the
-- table has no row-level security unless the role owns it (the log holds whole rows, to
-- which no policy applies). Asked by the log's own policy at every read, so a revoke or
-- a policy added later takes effect at once.
CREATE OR REPLACE FUNCTION pgmodels._may_consume(stream_id bigint, role oid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pgmodels.stream s JOIN pg_class c ON c.oid = s.source
                    WHERE s.id = $1 AND has_table_privilege($2, s.source, 'SELECT')
                      AND (NOT c.relrowsecurity OR pg_has_role($2, c.relowner, 'USAGE')))
$$;
COMMENT ON FUNCTION pgmodels._may_consume(bigint, oid) IS 'internal: whether a role may read a stream''s events (the log''s row-level policy)';

-- The stream a caller owns (or, with may_consume, may consume: it may read its table).
CREATE OR REPLACE FUNCTION pgmodels._stream_get(credential text, stream_name text, may_consume boolean DEFAULT false)
RETURNS pgmodels.stream
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    s pgmodels.stream;
BEGIN
    SELECT st.* INTO s FROM pgmodels.stream st WHERE st.name = stream_name;
    IF s.id IS NULL THEN
        RAISE EXCEPTION 'stream "%" does not exist', stream_name USING ERRCODE = '42704',
            HINT = 'See pgmodels.streams for the streams there are.';
    END IF;
    IF may_consume AND NOT pgmodels._may_consume(s.id, caller) THEN
        RAISE EXCEPTION 'permission denied for stream "%"', stream_name USING ERRCODE = '42501',
            DETAIL = format('Consuming a stream reads its events, the rows of %s: it needs SELECT on it (and, if it has row-level security, to own it).', s.source);
    ELSIF NOT may_consume AND NOT pg_has_role(caller, s.owner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of stream "%"', stream_name USING ERRCODE = '42501',
            DETAIL = format('Stream "%s" belongs to role "%s".', stream_name, s.owner);
    END IF;
    RETURN s;
END
$$;
COMMENT ON FUNCTION pgmodels._stream_get(text, text, boolean) IS 'internal: a stream its caller owns (or may consume), or an error';

-- What each stream's capture trigger checks at every statement, before it writes
-- anything (and create_stream once). The trigger runs with the definer's rights, and
-- PostgreSQL runs a cast, a domain's check or an operator with the rights of whoever
-- evaluates it: so the trigger may only evaluate conversions that are built in. It
-- converts two things. The key column, named in its body, into text: that column, as
-- the table has it now (it can be dropped and added again with another type, and a
-- type its owner made can gain a cast at any time), must be of a built-in base type,
-- whose text form is built in (only a superuser can add a cast from or to one). And the
-- inserted rows into the table's row type, named in its body: that name must still be
-- the table's row type (renamed, the table leaves its name free for a type someone
-- else makes, with casts of its own); the row type's own columns need no conversion.
-- Not a definer itself: the trigger calls it with the definer's rights.
CREATE OR REPLACE FUNCTION pgmodels._stream_capture_check(source oid, key_column name, row_type text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key_type oid;
    display text := source::regclass::text;
BEGIN
    IF row_type IS NOT NULL
       AND to_regtype(row_type) IS DISTINCT FROM (SELECT c.reltype FROM pg_class c WHERE c.oid = source) THEN
        RAISE EXCEPTION 'the table of stream "%" was renamed', (SELECT s.name FROM pgmodels.stream s WHERE s.source = _stream_capture_check.source)
            USING ERRCODE = '55000',
                  DETAIL = format('Its capture trigger writes rows of type %s; the table is now called %s.', row_type, display),
                  HINT = 'Rename the table back, or drop the stream and create it again.';
    END IF;
    IF key_column IS NULL THEN
        RETURN;
    END IF;
    SELECT a.atttypid INTO key_type FROM pg_attribute a
     WHERE a.attrelid = source AND a.attname = key_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF key_type IS NULL THEN
        RAISE EXCEPTION 'column "%" of relation % does not exist', key_column, display USING ERRCODE = '42703',
            DETAIL = 'It is the stream''s key column.';
    ELSIF NOT EXISTS (SELECT 1 FROM pg_type t WHERE t.oid = key_type AND t.oid < 16384  -- FirstNormalObjectId
                         AND t.typnamespace = 'pg_catalog'::regnamespace AND t.typtype = 'b'
                         AND t.typcategory IN ('N', 'S', 'D', 'U', 'B')) THEN
        RAISE EXCEPTION 'key column "%" of % is of type %, which cannot be a stream''s key', key_column, display,
                key_type::regtype
            USING ERRCODE = '42804',
                  DETAIL = 'A stream''s key is a column of a built-in integer, numeric, text, uuid, boolean, date or timestamp type: its events'' keys are made with the rights of the extension''s owner, and no conversion but a built-in one runs there.',
                  HINT = 'Give the key column such a type again, or drop the stream and make it on a key column of such a type.';
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._stream_capture_check(oid, name, text) IS 'internal: refuses (42804, 42703, 55000) a stream''s table whose key column is not of a built-in key type, or whose row type is no longer the one its capture trigger names; checked by the trigger at every statement';

-- A stream's capture trigger and its function, made (or made again, on an upgrade) from
-- the catalog: one INSERT ... SELECT per statement into the current child of the log,
-- after _stream_capture_check; a NOTIFY only while a worker waits. The function is a
-- definer so that producers cannot write the log; it evaluates no code a role defined
-- (see _stream_capture_check). Made during an extension script (an upgrade), the
-- function would belong to the extension: it is handed back to the stream.
CREATE OR REPLACE FUNCTION pgmodels._stream_capture_define(stream_id bigint) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s pgmodels.stream;
    capture text := format('stream_%s_capture', stream_id);
    trigger_name text := 'pgmodels_stream_' || stream_id;
    row_type text;
    branches text := '';
    body text;
BEGIN
    SELECT st.* INTO STRICT s FROM pgmodels.stream st WHERE st.id = stream_id;
    IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = s.source) THEN
        RETURN;  -- its table is gone: nothing to capture
    END IF;
    row_type := format_type((SELECT c.reltype FROM pg_class c WHERE c.oid = s.source), NULL);
    FOR child IN 0..2 LOOP
        branches := branches || format(
            '%s current = %s THEN INSERT INTO pgmodels.%I (ev_id, ev_txid, ev_time, ev_key, ev_row) '
            'SELECT pg_catalog.nextval(%L), pg_catalog.pg_current_xact_id(), pg_catalog.now(), %s, ROW(n.*)::%s '
            'FROM pgmodels_new_rows n; ',
            CASE WHEN child = 0 THEN 'IF' ELSE 'ELSIF' END, child, pgmodels._stream_log(s.id, child),
            'pgmodels.' || quote_ident(pgmodels._stream_log(s.id) || '_seq'),
            CASE WHEN s.key_column IS NULL THEN 'NULL' ELSE format('(n.%I)::text', s.key_column) END,
            row_type);
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = s.source AND t.tgname = trigger_name) THEN
        EXECUTE format('DROP TRIGGER %I ON %s', trigger_name, s.source);
    END IF;
    IF to_regprocedure(format('pgmodels.%I()', capture)) IS NOT NULL THEN
        EXECUTE format('DROP FUNCTION pgmodels.%I()', capture);
    END IF;
    -- The key's text form is fixed whatever the inserting session's settings (ISO dates,
    -- times in UTC, floats exact): it converts back to the key's type in any session
    -- (sql/078_stream_keys.sql), and a key hashes to one partition.
    -- The body is made first and handed over as one quoted literal (%L): the names in it
    -- (the table's, its row type's, the key column's) are a role's, and inside a
    -- dollar-quoted body a name holding the closing tag would end it and add statements.
    body := format(
        'DECLARE current smallint; waiting boolean; '
        'BEGIN '
        'PERFORM pgmodels._stream_capture_check(%s, %L, %L); '
        'SELECT s.current_child, EXISTS (SELECT 1 FROM pgmodels.stream_waiter w WHERE w.stream_id = s.id) '
        'INTO current, waiting FROM pgmodels.stream s WHERE s.id = %s; '
        '%s END IF; '
        'IF waiting THEN PERFORM pg_catalog.pg_notify(%L, ''''); END IF; '
        'RETURN NULL; '
        'END', s.source::oid, s.key_column, row_type, s.id, branches, trigger_name);
    EXECUTE format('CREATE FUNCTION pgmodels.%I() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER '
                   'SET search_path = pg_catalog, pg_temp SET DateStyle = ''ISO, YMD'' SET TimeZone = ''UTC'' '
                   'SET extra_float_digits = 1 AS %L', capture, body);
    IF EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                  AND d.objid = format('pgmodels.%I()', capture)::regprocedure AND d.deptype = 'e') THEN
        EXECUTE format('ALTER EXTENSION pgmodels DROP FUNCTION pgmodels.%I()', capture);
    END IF;
    EXECUTE format('COMMENT ON FUNCTION pgmodels.%I() IS %L', capture,
                   format('captures the rows inserted into %s as events of pgmodels stream "%s"', s.source, s.name));
    EXECUTE format('REVOKE ALL ON FUNCTION pgmodels.%I() FROM PUBLIC', capture);
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s REFERENCING NEW TABLE AS pgmodels_new_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION pgmodels.%I()', trigger_name, s.source, capture);
END
$$;
COMMENT ON FUNCTION pgmodels._stream_capture_define(bigint) IS 'internal: (re)makes a stream''s capture trigger and its definer function from the catalog';

CREATE OR REPLACE FUNCTION pgmodels._stream_create(credential text, stream_name text, source oid, key_column name)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    rel record;
    s pgmodels.stream;
    log text;
    key_type oid;
BEGIN
    PERFORM pgmodels._require_grant(caller, 'create_stream(text, text, text)', 'create_stream', 'may make streams');
    PERFORM pgmodels._check_name('stream', stream_name);
    SELECT c.oid, c.relkind, c.relowner, c.oid::regclass::text AS display INTO rel FROM pg_class c WHERE c.oid = source;
    IF rel.relkind IS NULL OR rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', coalesce(rel.display, source::text) USING ERRCODE = '42809',
            DETAIL = 'A stream''s events are the rows inserted into a table.';
    ELSIF NOT pg_has_role(caller, rel.relowner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', rel.display USING ERRCODE = '42501',
            DETAIL = 'Making a table a stream adds a trigger to it.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = source AND c.relpersistence = 't') THEN
        RAISE EXCEPTION 'a temporary table cannot be a stream' USING ERRCODE = '0A000',
            DETAIL = 'It ends with its session, and its stream with it.';
    END IF;
    IF key_column IS NOT NULL THEN
        SELECT a.atttypid INTO key_type FROM pg_attribute a
         WHERE a.attrelid = source AND a.attname = key_column AND a.attnum > 0 AND NOT a.attisdropped;
        IF key_type IS NULL THEN
            RAISE EXCEPTION 'column "%" of relation % does not exist', key_column, rel.display USING ERRCODE = '42703',
                DETAIL = 'It was given as the stream''s key column.';
        END IF;
        PERFORM pgmodels._stream_capture_check(source, key_column, NULL);
    END IF;
    IF EXISTS (SELECT 1 FROM pgmodels.stream st WHERE st.name = stream_name) THEN
        RAISE EXCEPTION 'stream "%" already exists', stream_name USING ERRCODE = '42710';
    END IF;
    SELECT st.name INTO log FROM pgmodels.stream st WHERE st.source = _stream_create.source;
    IF log IS NOT NULL THEN
        RAISE EXCEPTION 'table % is already the table of stream "%"', rel.display, log USING ERRCODE = '42710',
            HINT = 'Add consumers to that stream: it serves any number of them.';
    END IF;
    INSERT INTO pgmodels.stream (name, owner, source, key_column) VALUES (stream_name, caller::regrole, source, key_column)
    RETURNING * INTO s;
    log := pgmodels._stream_log(s.id);
    EXECUTE format('CREATE SEQUENCE pgmodels.%I', log || '_seq');
    EXECUTE format('CREATE TABLE pgmodels.%I (ev_id bigint NOT NULL, ev_txid xid8 NOT NULL, ev_time timestamptz NOT NULL, '
                   'ev_key text, ev_row %s)', log, format_type((SELECT c.reltype FROM pg_class c WHERE c.oid = source), NULL));
    EXECUTE format('COMMENT ON TABLE pgmodels.%I IS %L', log, format('the event log of pgmodels stream "%s"', stream_name));
    -- Consumers' owners read the log directly (SELECT is granted at add_consumer), and only
    -- while they may read the stream's table: a policy asks at every read.
    EXECUTE format('ALTER TABLE pgmodels.%I ENABLE ROW LEVEL SECURITY', log);
    EXECUTE format('CREATE POLICY consumers ON pgmodels.%I FOR SELECT '
                   'USING ((SELECT pgmodels._may_consume(%s, (SELECT r.oid FROM pg_catalog.pg_roles r '
                   'WHERE r.rolname = current_user))))', log, s.id);
    FOR child IN 0..2 LOOP
        EXECUTE format('CREATE TABLE pgmodels.%I () INHERITS (pgmodels.%I)', pgmodels._stream_log(s.id, child), log);
        EXECUTE format('COMMENT ON TABLE pgmodels.%I IS %L', pgmodels._stream_log(s.id, child),
                       format('part %s of the event log of pgmodels stream "%s" (inserts go to one part at a time; '
                              'maintenance empties the parts every consumer is past)', child, stream_name));
        EXECUTE format('ALTER TABLE pgmodels.%I ENABLE ROW LEVEL SECURITY', pgmodels._stream_log(s.id, child));
        EXECUTE format('CREATE INDEX ON pgmodels.%I (ev_txid)', pgmodels._stream_log(s.id, child));
        EXECUTE format('CREATE INDEX ON pgmodels.%I (ev_id)', pgmodels._stream_log(s.id, child));
    END LOOP;
    PERFORM pgmodels._stream_capture_define(s.id);
    RETURN s.id;
END
$$;
COMMENT ON FUNCTION pgmodels._stream_create(text, text, oid, name) IS 'internal: the core of create_stream(): the catalog row, the private log and its children, the capture trigger (definer: it writes what producers and consumers cannot)';

-- Every stream's capture trigger made again from the definitions above: an upgrade
-- brings the triggers of streams an earlier release made up to date (a new install has
-- no streams yet).
DO $capture$
BEGIN
    PERFORM pgmodels._stream_capture_define(s.id) FROM pgmodels.stream s ORDER BY s.id;
END
$capture$;

CREATE OR REPLACE FUNCTION pgmodels._stream_drop(credential text, stream_name text, cascade boolean) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s pgmodels.stream := pgmodels._stream_get(credential, stream_name);
    consumers text;
BEGIN
    SELECT string_agg(c.name, ', ' ORDER BY c.name) INTO consumers FROM pgmodels.stream_consumer c WHERE c.stream_id = s.id;
    IF consumers IS NOT NULL AND NOT cascade THEN
        RAISE EXCEPTION 'stream "%" has consumers', stream_name USING ERRCODE = '2BP01',
            DETAIL = format('Consumers: %s.', consumers),
            HINT = 'Drop them first, or call drop_stream(..., cascade => true); their output tables stay.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = s.source) THEN
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', 'pgmodels_stream_' || s.id, s.source);
    END IF;
    EXECUTE format('DROP FUNCTION IF EXISTS pgmodels.%I()', format('stream_%s_capture', s.id));
    EXECUTE format('DROP TABLE IF EXISTS pgmodels.%I CASCADE', pgmodels._stream_log(s.id));
    EXECUTE format('DROP SEQUENCE IF EXISTS pgmodels.%I', pgmodels._stream_log(s.id) || '_seq');
    DELETE FROM pgmodels.stream st WHERE st.id = s.id;
END
$$;
COMMENT ON FUNCTION pgmodels._stream_drop(text, text, boolean) IS 'internal: the core of drop_stream(): removes the trigger, the log and the catalog rows';

CREATE OR REPLACE FUNCTION pgmodels._consumer_add(credential text, consumer_name text, stream_name text, project_name text,
                                                  output oid, enrich oid, enrich_key name, from_beginning boolean,
                                                  partitions integer)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    s pgmodels.stream := pgmodels._stream_get(credential, stream_name, true);
    proj pgmodels.projects;
    c pgmodels.stream_consumer;
BEGIN
    PERFORM pgmodels._require_grant(caller, 'add_consumer(text, text, text, text, text, text, boolean, integer)',
                                    'add_consumer', 'may score streams');
    PERFORM pgmodels._check_name('consumer', consumer_name);
    IF partitions IS NULL OR partitions NOT BETWEEN 1 AND 64 THEN
        RAISE EXCEPTION 'partitions must be between 1 and 64' USING ERRCODE = '22023',
            DETAIL = format('It was %s.', coalesce(partitions::text, 'NULL')),
            HINT = 'One partition per worker that should score this consumer''s events at once.';
    END IF;
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.name = project_name;
    IF proj.id IS NULL THEN
        RAISE EXCEPTION 'project "%" does not exist', project_name USING ERRCODE = '42704';
    ELSIF NOT pgmodels._may(caller, proj.id, 'predict') THEN
        RAISE EXCEPTION 'permission denied for project "%"', project_name USING ERRCODE = '42501',
            DETAIL = format('Role "%s" has no predict privilege on it.', caller::regrole);
    END IF;
    IF output = s.source OR NOT EXISTS (SELECT 1 FROM pg_class r WHERE r.oid = output AND r.relkind IN ('r', 'p')
                                           AND pg_has_role(caller, r.relowner, 'USAGE')) THEN
        RAISE EXCEPTION 'must be owner of table %', output::regclass USING ERRCODE = '42501',
            DETAIL = 'A consumer writes only an output table of its own role, never its stream''s table.';
    END IF;
    IF enrich IS NOT NULL AND NOT has_column_privilege(caller, enrich, enrich_key, 'SELECT') THEN
        RAISE EXCEPTION 'permission denied for relation %', enrich::regclass USING ERRCODE = '42501';
    END IF;
    IF EXISTS (SELECT 1 FROM pgmodels.stream_consumer x WHERE x.name = consumer_name) THEN
        RAISE EXCEPTION 'consumer "%" already exists', consumer_name USING ERRCODE = '42710';
    ELSIF EXISTS (SELECT 1 FROM pgmodels.stream_consumer x WHERE x.output = _consumer_add.output) THEN
        RAISE EXCEPTION 'table % is already the output of another consumer', output::regclass USING ERRCODE = '42710';
    END IF;
    INSERT INTO pgmodels.stream_consumer (name, stream_id, owner, project_id, output, enrich, enrich_key, partitions)
    VALUES (consumer_name, s.id, caller::regrole, proj.id, output, enrich, enrich_key, partitions)
    RETURNING * INTO c;
    INSERT INTO pgmodels.stream_consumer_part (consumer_id, part, done_snapshot)
    SELECT c.id, g, CASE WHEN from_beginning THEN '1:1:'::pg_snapshot ELSE pg_current_snapshot() END
      FROM generate_series(0, partitions - 1) g;
    -- the consumer's owner reads the events it may read anyway (it has SELECT on the table)
    EXECUTE format('GRANT SELECT ON pgmodels.%I TO %I', pgmodels._stream_log(s.id), caller::regrole::text);
    RETURN c.id;
END
$$;
COMMENT ON FUNCTION pgmodels._consumer_add(text, text, text, text, oid, oid, name, boolean, integer) IS 'internal: the core of add_consumer() (definer: it writes the catalog and lets the consumer''s owner read the log)';

-- A consumer and its stream, for its owner (a member will do, but to take: only the
-- owner itself); with take, also one partition's position:
-- the partition with a batch in progress, else the one taken longest ago, that no other
-- transaction holds and that is not in skip (the ones this call found empty), locked for
-- the caller's transaction (when there is none, nothing is returned), with a batch
-- started when none is in progress.
CREATE OR REPLACE FUNCTION pgmodels._consumer_get(credential text, consumer_name text, take boolean,
                                                  skip integer[] DEFAULT '{}')
RETURNS TABLE (consumer_id bigint, stream_id bigint, project text, source oid, key_column name, output oid,
               enrich oid, enrich_key name, partitions integer, part integer, done_snapshot pg_snapshot,
               batch_snapshot pg_snapshot, batch_after bigint, log text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    c pgmodels.stream_consumer;
    s pgmodels.stream;
    p pgmodels.stream_consumer_part;
BEGIN
    SELECT x.* INTO c FROM pgmodels.stream_consumer x WHERE x.name = consumer_name;
    IF c.id IS NULL THEN
        RAISE EXCEPTION 'consumer "%" does not exist', consumer_name USING ERRCODE = '42704',
            HINT = 'See pgmodels.stream_consumers for the consumers you own.';
    ELSIF NOT pg_has_role(caller, c.owner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of consumer "%"', consumer_name USING ERRCODE = '42501',
            DETAIL = format('Consumer "%s" belongs to role "%s".', consumer_name, c.owner);
    END IF;
    SELECT st.* INTO s FROM pgmodels.stream st WHERE st.id = c.stream_id;
    IF take THEN
        -- processing runs the owner's code (a trigger or default of its output table, a
        -- cast of a column's type it made) with the rights of the role that processes: so
        -- only the owner itself may, as only a batch job's owner runs the job
        IF caller <> c.owner THEN
            RAISE EXCEPTION 'consumer "%" is processed as role "%"', consumer_name, c.owner USING ERRCODE = '42501',
                DETAIL = 'Processing reads the events and writes the output table with exactly the consumer''s owner''s rights, and runs only as that role: another role''s rights would run code the owner wrote (a trigger on its output table, a cast of a type it made) with them.',
                HINT = format('Log in as role "%s" to process it (pgmodels stream work --dsn with that role).', c.owner);
        END IF;
        IF NOT pgmodels._may_consume(s.id, caller) THEN
            RAISE EXCEPTION 'permission denied for stream "%"', s.name USING ERRCODE = '42501',
                DETAIL = format('Consuming a stream reads its events, the rows of %s: it needs SELECT on it (and, if it has row-level security, to own it).', s.source);
        END IF;
        SELECT x.* INTO p FROM pgmodels.stream_consumer_part x
         WHERE x.consumer_id = c.id AND x.part <> ALL (coalesce(skip, '{}'))
         ORDER BY x.batch_snapshot IS NULL, x.taken_at NULLS FIRST, x.part
         LIMIT 1 FOR UPDATE SKIP LOCKED;
        IF p.consumer_id IS NULL THEN
            RETURN;  -- other workers hold every partition
        END IF;
        UPDATE pgmodels.stream_consumer_part x
           SET batch_snapshot = coalesce(x.batch_snapshot, pg_current_snapshot()),
               batch_after = CASE WHEN x.batch_snapshot IS NULL THEN 0 ELSE x.batch_after END,
               taken_at = clock_timestamp(), taken_by = pg_current_xact_id()
         WHERE x.consumer_id = p.consumer_id AND x.part = p.part RETURNING x.* INTO p;
    END IF;
    RETURN QUERY SELECT c.id, s.id, (SELECT j.name FROM pgmodels.projects j WHERE j.id = c.project_id), s.source::oid,
                        s.key_column, c.output::oid, c.enrich::oid, c.enrich_key, c.partitions, p.part, p.done_snapshot,
                        p.batch_snapshot, p.batch_after, pgmodels._stream_log(s.id);
END
$$;
COMMENT ON FUNCTION pgmodels._consumer_get(text, text, boolean, integer[]) IS 'internal: a consumer for its owner; take locks one of its partitions for this transaction and starts a batch there';

-- Records what process_stream did, in the transaction that wrote the predictions: the
-- partition's position (only the transaction that took it, with _consumer_get, may) and,
-- when it handled events, the consumer's counters. Returns the delivery number after
-- which the scored events' predictions go: the consumer's row then stays locked to
-- commit, so a partition scored in parallel numbers its deliveries after this one's (it
-- waits for this commit to write, not to score). A call that handled no events takes no
-- lock on the consumer.
CREATE OR REPLACE FUNCTION pgmodels._consumer_advance(credential text, consumer_id bigint, part integer,
                                                      last_event_id bigint, finished boolean, scored bigint,
                                                      failed bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '10s'
AS $$
DECLARE
    base bigint;
BEGIN
    IF scored IS NULL OR failed IS NULL OR scored < 0 OR failed < 0 THEN
        RAISE EXCEPTION 'the counts of scored and failed events must not be negative' USING ERRCODE = '22023';
    END IF;
    UPDATE pgmodels.stream_consumer_part p
       SET done_snapshot = CASE WHEN finished THEN p.batch_snapshot ELSE p.done_snapshot END,
           batch_snapshot = CASE WHEN finished THEN NULL ELSE p.batch_snapshot END,
           batch_after = CASE WHEN finished THEN 0 ELSE greatest(p.batch_after, coalesce(_consumer_advance.last_event_id, 0)) END
      FROM pgmodels.stream_consumer c
     WHERE p.consumer_id = _consumer_advance.consumer_id AND p.part = _consumer_advance.part
       AND p.batch_snapshot IS NOT NULL AND c.id = p.consumer_id AND p.taken_by = pg_current_xact_id()
       AND pg_has_role(pgmodels._verify_caller(credential), c.owner, 'USAGE');
    IF NOT FOUND THEN
        RAISE EXCEPTION 'partition % of consumer % has no batch in progress for this transaction', part, consumer_id
            USING ERRCODE = '55000';
    END IF;
    IF scored + failed = 0 THEN
        RETURN NULL;  -- nothing to number or count
    END IF;
    BEGIN
        UPDATE pgmodels.stream_consumer c
           SET delivered = c.delivered + scored,
               events_processed = c.events_processed + scored + failed,
               failures = c.failures + failed,
               last_event_id = CASE WHEN _consumer_advance.last_event_id IS NULL THEN c.last_event_id
                                    ELSE greatest(c.last_event_id, _consumer_advance.last_event_id) END,
               last_activity = now()
         WHERE c.id = consumer_id
        RETURNING c.delivered - scored INTO base;
    EXCEPTION WHEN lock_not_available THEN
        RAISE EXCEPTION 'consumer % is held by a transaction that scored its events and has not ended', consumer_id
            USING ERRCODE = '55P03',
                  DETAIL = 'Predictions are numbered in commit order, so partitions wait for each other''s commit; this one waited 10 seconds.',
                  HINT = 'End transactions that call process_stream promptly (workers run each call on its own). This call''s work was undone; nothing is lost.';
    END;
    RETURN base;
END
$$;
COMMENT ON FUNCTION pgmodels._consumer_advance(text, bigint, integer, bigint, boolean, bigint, bigint) IS 'internal: moves a consumer partition''s position past the events process_stream handled, in the same transaction as their predictions; returns the delivery number they follow';

CREATE OR REPLACE FUNCTION pgmodels._consumer_dead_letters(credential text, consumer_id bigint, event_ids bigint[],
                                                           event_keys text[], events jsonb[], errors text[],
                                                           sqlstates text[])
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pgmodels.stream_consumer c WHERE c.id = consumer_id
                      AND pg_has_role(pgmodels._verify_caller(credential), c.owner, 'USAGE')) THEN
        RAISE EXCEPTION 'consumer % is not this role''s', consumer_id USING ERRCODE = '42501';
    END IF;
    INSERT INTO pgmodels.stream_dead_letter (consumer_id, event_id, event_key, event, error, error_sqlstate)
    SELECT consumer_id, u.i, u.k, u.e, u.m, u.s FROM unnest(event_ids, event_keys, events, errors, sqlstates) AS u(i, k, e, m, s)
    ON CONFLICT DO NOTHING;
END
$$;
COMMENT ON FUNCTION pgmodels._consumer_dead_letters(text, bigint, bigint[], text[], jsonb[], text[], text[]) IS 'internal: records the events a consumer could not score';

CREATE OR REPLACE FUNCTION pgmodels._consumer_drop(credential text, consumer_name text) RETURNS regclass
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record;
BEGIN
    SELECT g.consumer_id, g.stream_id, g.output, x.owner INTO c
      FROM pgmodels._consumer_get(credential, consumer_name, false) g
      JOIN pgmodels.stream_consumer x ON x.id = g.consumer_id;
    DELETE FROM pgmodels.stream_consumer x WHERE x.id = c.consumer_id;
    IF NOT EXISTS (SELECT 1 FROM pgmodels.stream_consumer x WHERE x.stream_id = c.stream_id AND x.owner = c.owner)
       AND EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = c.owner) THEN
        EXECUTE format('REVOKE SELECT ON pgmodels.%I FROM %I', pgmodels._stream_log(c.stream_id), c.owner::regrole::text);
    END IF;
    RETURN c.output::regclass;
END
$$;
COMMENT ON FUNCTION pgmodels._consumer_drop(text, text) IS 'internal: the core of drop_consumer()';

-- A worker about to wait for events (wait = true) or at work again: inserts into the
-- streams of these consumers notify while any worker waits.
CREATE OR REPLACE FUNCTION pgmodels._stream_waiting(credential text, consumer_names text[], wait boolean) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
BEGIN
    IF wait THEN
        INSERT INTO pgmodels.stream_waiter (stream_id, pid)
        SELECT DISTINCT c.stream_id, pg_backend_pid() FROM pgmodels.stream_consumer c
         WHERE c.name = ANY (consumer_names) AND pg_has_role(caller, c.owner, 'USAGE')
        ON CONFLICT DO NOTHING;
    ELSE
        DELETE FROM pgmodels.stream_waiter w WHERE w.pid = pg_backend_pid();
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._stream_waiting(text, text[], boolean) IS 'internal: registers this backend as a worker waiting for the streams of these consumers (inserts then notify), or no longer';

-- Whether a transaction that inserted into these streams' logs is still open: its events
-- are not visible yet and its commit may not notify (the capture trigger looked for
-- waiting workers at insert), so a worker about to wait looks again soon instead.
CREATE OR REPLACE FUNCTION pgmodels._stream_inflight(stream_ids bigint[]) RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l
                    WHERE l.locktype = 'relation' AND l.mode = 'RowExclusiveLock' AND l.granted
                      AND l.pid <> pg_catalog.pg_backend_pid()
                      -- the children's names as pgmodels._stream_log makes them: this runs as
                      -- the worker's role, which may not execute that internal function
                      AND l.relation IN (SELECT pg_catalog.to_regclass('pgmodels.stream_' || i || '_log_' || c)
                                           FROM pg_catalog.unnest(stream_ids) i, pg_catalog.generate_series(0, 2) c))
$$;
COMMENT ON FUNCTION pgmodels._stream_inflight(bigint[]) IS 'internal: whether another backend has inserted into these streams'' logs in a transaction still open';

-- Keeps each log small and free of dead rows: a child every consumer is past is emptied
-- with TRUNCATE (under a lock taken first, so that no insert slips in between the check
-- and the TRUNCATE; in READ COMMITTED, so that the check sees every commit before the
-- lock), and inserts move on to the next child once the current one holds rotate_rows
-- events or a minute's worth. Definer: it alters the private logs; it only removes events
-- no consumer needs, for the stream's owner and its consumers' owners.
--
-- Its cost follows what there is to do, not the size of the log, and is bounded per call.
-- The positions are read once per child, as three values over every partition of every
-- consumer: the oldest xmin, the oldest xmax, and the transactions any of them saw
-- running. pg_visible_in_snapshot(t, p) is t < xmin(p), or t < xmax(p) and t not running
-- in p; so every position sees every event of a child exactly when its newest event
-- (read from the ev_txid index) is older than every xmax and none of its events belongs
-- to one of those running transactions (an index probe each), with no event read. A
-- child that must stay is unlocked at once (its lock is taken in a subtransaction that is
-- then rolled back); a TRUNCATE keeps its lock to the end of the call, after which only
-- the rotation's index reads run. The lag samples come first, under no lock of the log's
-- children, and within a budget of 0.2 s (counting a consumer's pending events takes time
-- in proportion to them): the consumers left are sampled by the next calls, the oldest
-- sample first. The answer says what was done and what remains.
CREATE OR REPLACE FUNCTION pgmodels._stream_maintain(credential text, stream_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    s pgmodels.stream;
    started timestamptz := clock_timestamp();
    horizon xid8;    -- every position sees every transaction older than this
    bound xid8;      -- no position sees a transaction from this one on
    running xid8[];  -- the transactions some position saw running: it does not see them
    newest xid8;
    log text;
    child integer;
    span bigint;
    passed boolean;
    due record;
    sampled integer := 0;
    unsampled integer := 0;
    notes text[] := '{}';
BEGIN
    SELECT st.* INTO s FROM pgmodels.stream st WHERE st.id = stream_id;
    IF s.id IS NULL OR NOT (pg_has_role(caller, s.owner, 'USAGE') OR EXISTS (
            SELECT 1 FROM pgmodels.stream_consumer c WHERE c.stream_id = s.id AND pg_has_role(caller, c.owner, 'USAGE'))) THEN
        RAISE EXCEPTION 'permission denied for stream %', stream_id USING ERRCODE = '42501',
            DETAIL = 'A stream''s log is maintained by its owner and its consumers'' owners.';
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'stream maintenance needs READ COMMITTED' USING ERRCODE = '25001',
            DETAIL = 'It must see every commit made before it locks a part of the log.';
    END IF;
    -- workers that died while waiting
    DELETE FROM pgmodels.stream_waiter w
     WHERE w.stream_id = s.id AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = w.pid);
    -- a sample of each consumer's progress and lag, at most every 30 seconds, kept a day
    -- (the console draws throughput and lag over the last hour from them)
    FOR due IN SELECT x.id, x.events_processed FROM pgmodels.stream_consumer x
              WHERE x.stream_id = s.id
                AND NOT EXISTS (SELECT 1 FROM pgmodels.stream_consumer_sample y
                                 WHERE y.consumer_id = x.id AND y.at > now() - interval '30 seconds')
              ORDER BY (SELECT max(y.at) FROM pgmodels.stream_consumer_sample y WHERE y.consumer_id = x.id) NULLS FIRST,
                       x.id
    LOOP
        IF sampled > 0 AND clock_timestamp() - started > interval '200 milliseconds' THEN
            unsampled := unsampled + 1;
            CONTINUE;
        END IF;
        INSERT INTO pgmodels.stream_consumer_sample (consumer_id, at, events_processed, events_pending)
        VALUES (due.id, now(), due.events_processed, (pgmodels._consumer_lag(due.id, credential)).pending)
        ON CONFLICT DO NOTHING;
        sampled := sampled + 1;
    END LOOP;
    DELETE FROM pgmodels.stream_consumer_sample x
     WHERE x.at < now() - interval '1 day'
       AND x.consumer_id IN (SELECT c.id FROM pgmodels.stream_consumer c WHERE c.stream_id = s.id);
    FOR child IN SELECT g FROM generate_series(0, 2) g WHERE g <> s.current_child LOOP
        log := pgmodels._stream_log(s.id, child);
        BEGIN
            EXECUTE format('LOCK TABLE pgmodels.%I IN ACCESS EXCLUSIVE MODE NOWAIT', log);
            -- every event's transaction has ended (a running one would hold a lock on the child)
            EXECUTE format('SELECT max(e.ev_txid) FROM pgmodels.%I e', log) INTO newest;
            IF newest IS NULL THEN
                RAISE SQLSTATE 'PGMS0';  -- empty: nothing to do here, and the lock goes
            END IF;
            -- the positions, read under the lock: they only move forward
            SELECT min(pg_snapshot_xmin(p.done_snapshot)), min(pg_snapshot_xmax(p.done_snapshot)),
                   (SELECT coalesce(array_agg(DISTINCT r), '{}')
                      FROM pgmodels.stream_consumer x JOIN pgmodels.stream_consumer_part q ON q.consumer_id = x.id
                     CROSS JOIN LATERAL pg_snapshot_xip(q.done_snapshot) r
                     WHERE x.stream_id = s.id AND r <= newest)
              INTO horizon, bound, running
              FROM pgmodels.stream_consumer x JOIN pgmodels.stream_consumer_part p ON p.consumer_id = x.id
             WHERE x.stream_id = s.id;
            IF horizon IS NULL OR newest < horizon THEN
                passed := true;  -- no consumer, or every event older than every position
            ELSIF newest >= bound THEN
                passed := false;  -- its newest event is after some position
            ELSE
                EXECUTE format('SELECT NOT EXISTS (SELECT 1 FROM pgmodels.%I e WHERE e.ev_txid = ANY ($1))', log)
                    INTO passed USING running;
            END IF;
            IF NOT passed THEN
                RAISE SQLSTATE 'PGMS1';  -- a consumer is behind: it stays, and the lock goes
            END IF;
            EXECUTE format('TRUNCATE pgmodels.%I', log);
            notes := notes || format('truncated %s', child);
        EXCEPTION
            WHEN lock_not_available THEN
                notes := notes || format('%s kept: in use', child);
            WHEN SQLSTATE 'PGMS0' THEN
                NULL;
            WHEN SQLSTATE 'PGMS1' THEN
                notes := notes || format('%s kept: a consumer is behind', child);
        END;
    END LOOP;
    EXECUTE format('SELECT max(e.ev_id) - min(e.ev_id) + 1 FROM pgmodels.%I e', pgmodels._stream_log(s.id, s.current_child))
        INTO span;
    child := (s.current_child + 1) % 3;
    IF coalesce(span, 0) > 0 AND (span >= s.rotate_rows OR s.rotated_at < now() - interval '1 minute') THEN
        EXECUTE format('SELECT max(e.ev_txid) FROM pgmodels.%I e', pgmodels._stream_log(s.id, child)) INTO newest;
        IF newest IS NULL THEN  -- compare and set: another maintainer may have rotated
            UPDATE pgmodels.stream st SET current_child = child, rotated_at = now()
             WHERE st.id = s.id AND st.current_child = s.current_child;
            IF FOUND THEN
                notes := notes || format('inserts go to %s', child);
            END IF;
        ELSE
            notes := notes || format('inserts stay in %s until %s is emptied', s.current_child, child);
        END IF;
    END IF;
    IF unsampled > 0 THEN
        notes := notes || format('%s consumers'' lag to sample in the next calls', unsampled);
    END IF;
    RETURN array_to_string(notes, '; ');
END
$$;
COMMENT ON FUNCTION pgmodels._stream_maintain(text, bigint) IS 'internal: rotates a stream''s log and truncates the children every consumer is past';

-- How far behind a consumer is: events not yet processed, and the oldest one's time, in
-- one pass over the log (each event checked against its partition's position). Definer
-- (it reads the log); answers only a role that owns the consumer or its stream, as the
-- credential proves (inside a definer function current_user is the definer).
CREATE OR REPLACE FUNCTION pgmodels._consumer_lag(consumer_id bigint, credential text, OUT pending bigint,
                                                  OUT oldest timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    c pgmodels.stream_consumer;
    s pgmodels.stream;
BEGIN
    SELECT x.* INTO c FROM pgmodels.stream_consumer x WHERE x.id = consumer_id;
    SELECT st.* INTO s FROM pgmodels.stream st WHERE st.id = c.stream_id;
    IF c.id IS NULL OR NOT (pg_has_role(caller, c.owner, 'USAGE') OR pg_has_role(caller, s.owner, 'USAGE')) THEN
        RETURN;
    END IF;
    EXECUTE format('SELECT count(*), min(l.ev_time) FROM pgmodels.%I l
                      JOIN pgmodels.stream_consumer_part p ON p.consumer_id = $1
                       AND p.part = CASE WHEN $2 = 1 THEN 0 ELSE pgmodels._event_part(l.ev_key, l.ev_id, $2) END
                     WHERE l.ev_txid >= (SELECT min(pg_snapshot_xmin(q.done_snapshot))
                                           FROM pgmodels.stream_consumer_part q WHERE q.consumer_id = $1)
                       AND l.ev_txid >= pg_snapshot_xmin(p.done_snapshot)
                       AND NOT pg_visible_in_snapshot(l.ev_txid, p.done_snapshot)
                       AND NOT (l.ev_id <= p.batch_after AND p.batch_snapshot IS NOT NULL
                                AND pg_visible_in_snapshot(l.ev_txid, p.batch_snapshot))', pgmodels._stream_log(s.id))
        INTO pending, oldest USING c.id, c.partitions;
END
$$;
COMMENT ON FUNCTION pgmodels._consumer_lag(bigint, text) IS 'internal: a consumer''s pending events and the oldest one''s time, for the roles that own it or its stream';

-- sql/077_stream.sql
-- Streaming deployment: create_stream(), add_consumer(), process_stream(),
-- read_predictions(), latest_prediction(), drop_consumer(), drop_stream(),
-- stream_maintenance(), and the views pgmodels.streams, pgmodels.stream_consumers and
-- pgmodels.stream_dead_letters. How the log and positions work: sql/075. The work is in
-- python_udfs/pgmodels/stream/; workers are `pgmodels stream work`.

CREATE OR REPLACE FUNCTION @extschema@.create_stream(stream_name text, relation_name text, key_column text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    rel regclass;
BEGIN
    BEGIN
        rel := pg_catalog.to_regclass(relation_name);  -- as the caller sees it (search_path)
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'invalid relation name "%"', relation_name USING ERRCODE = '22023';
    END;
    IF rel IS NULL THEN
        RAISE EXCEPTION 'relation "%" does not exist', relation_name USING ERRCODE = '42P01';
    END IF;
    RETURN pgmodels._stream_create(pgmodels._credential(), stream_name, rel, key_column);
END
$$;
COMMENT ON FUNCTION @extschema@.create_stream(text, text, text) IS 'makes a table a stream: from now on every row inserted into it is an event, written once into the stream''s log whatever the number of consumers; returns the stream id';

CREATE OR REPLACE FUNCTION pgmodels._add_consumer(stream_name text, consumer_name text, project_name text,
    output_table text, enrich_relation text, enrich_key text, from_beginning boolean, partitions integer)
RETURNS bigint LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.stream.consumers import add; return add(stream_name, consumer_name, project_name, output_table, enrich_relation, enrich_key, from_beginning, partitions)
$$;
COMMENT ON FUNCTION pgmodels._add_consumer(text, text, text, text, text, text, boolean, integer) IS 'internal: the core of add_consumer(), run as the caller';

CREATE OR REPLACE FUNCTION @extschema@.add_consumer(stream_name text, consumer_name text, project_name text,
    output_table text DEFAULT NULL, enrich_relation text DEFAULT NULL, enrich_key text DEFAULT NULL,
    from_beginning boolean DEFAULT false, partitions integer DEFAULT 1)
RETURNS bigint LANGUAGE sql VOLATILE
AS $$
    SELECT coalesce(pgmodels._add_consumer($1, $2, $3, $4, $5, $6, $7, $8), pgmodels._raise_pending(NULL::bigint))
$$;
COMMENT ON FUNCTION @extschema@.add_consumer(text, text, text, text, text, text, boolean, integer) IS 'adds a model that scores a stream''s events into an output table (created when missing), optionally looking missing features up by key in a relation; starts at the stream''s end unless from_beginning; with partitions > 1, that many workers score its events at once (split by key)';

CREATE OR REPLACE FUNCTION pgmodels._process_stream(consumer_name text, max_events integer) RETURNS integer
LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.stream.process import process; return process(consumer_name, max_events)
$$;
COMMENT ON FUNCTION pgmodels._process_stream(text, integer) IS 'internal: the core of process_stream(), run as the caller';

CREATE OR REPLACE FUNCTION @extschema@.process_stream(consumer_name text, max_events integer DEFAULT 1000)
RETURNS integer LANGUAGE sql VOLATILE
AS $$ SELECT coalesce(pgmodels._process_stream($1, $2), pgmodels._raise_pending(NULL::integer)) $$;
COMMENT ON FUNCTION @extschema@.process_stream(text, integer) IS 'scores a consumer''s next events (at most max_events; of one partition, when it has several) in one model run, writes the predictions, moves the position and notifies subscribers, all in the caller''s transaction; returns the number of events taken (0 when there are none, in any partition no other transaction holds)';

-- A consumer's output table and channel: what subscribers need, not secret.
CREATE OR REPLACE FUNCTION pgmodels._consumer_output(consumer_name text, OUT output regclass, OUT channel text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT c.output, 'pgmodels_consumer_' || c.id INTO output, channel FROM pgmodels.stream_consumer c WHERE c.name = consumer_name;
    IF output IS NULL THEN
        RAISE EXCEPTION 'consumer "%" does not exist', consumer_name USING ERRCODE = '42704';
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._consumer_output(text) IS 'internal: a consumer''s output table and notification channel';

-- A consumer's output table and the type of its key column, checked to be a built-in key
-- type (sql/078_stream_keys.sql): reading and comparing keys converts nothing a role
-- defined. As the caller.
CREATE OR REPLACE FUNCTION pgmodels._consumer_keyed_output(consumer_name text, OUT output regclass, OUT key_type regtype)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    output := (pgmodels._consumer_output(consumer_name)).output;
    key_type := pgmodels._key_type(output, 'key');
    IF key_type IS NULL THEN
        RAISE EXCEPTION 'the key column of output table % of consumer "%" is not of a built-in key type', output,
                consumer_name
            USING ERRCODE = '42804',
                  DETAIL = format('It is %s.', coalesce((SELECT pg_catalog.format_type(a.atttypid, a.atttypmod)
                                                          FROM pg_catalog.pg_attribute a
                                                         WHERE a.attrelid = output AND a.attname = 'key'
                                                           AND a.attnum > 0 AND NOT a.attisdropped), 'missing')),
                  HINT = 'Its owner gives it the type of the stream''s key column again (ALTER TABLE ... ALTER COLUMN key TYPE ...).';
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._consumer_keyed_output(text) IS 'internal: a consumer''s output table and the type of its key column, which must be a built-in key type';

CREATE OR REPLACE FUNCTION @extschema@.read_predictions(consumer_name text, after_event_id bigint, max_rows integer DEFAULT 1000)
RETURNS TABLE (event_id bigint, key text, prediction real, probabilities real[], label text, model_id bigint,
               model_version integer, event_time timestamptz, predicted_at timestamptz)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    out regclass := (pgmodels._consumer_keyed_output(consumer_name)).output;
    since bigint := 0;
BEGIN
    IF max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'max_rows must be positive' USING ERRCODE = '22023';
    END IF;
    IF coalesce(after_event_id, 0) <> 0 THEN  -- as the caller, who needs SELECT on the output
        EXECUTE format('SELECT o.delivery FROM %s o WHERE o.event_id = $1', out) INTO since USING after_event_id;
        IF since IS NULL THEN
            RAISE EXCEPTION 'event % has no prediction of consumer "%"', after_event_id, consumer_name
                USING ERRCODE = '22023', HINT = 'Pass the last event id read_predictions returned, or 0 to read from the start.';
        END IF;
    END IF;
    -- the key in its text form (the output table has it in the stream's key type)
    RETURN QUERY EXECUTE format('SELECT o.event_id, CAST(o.key AS pg_catalog.text), o.prediction, o.probabilities, '
                                'o.label, o.model_id, o.model_version, o.event_time, o.predicted_at FROM %s o '
                                'WHERE o.delivery > $1 ORDER BY o.delivery LIMIT $2', out) USING since, max_rows;
END
$$;
COMMENT ON FUNCTION @extschema@.read_predictions(text, bigint, integer) IS 'a durable cursor over a consumer''s predictions in the order they were made: those after the prediction of event after_event_id (0: from the start), the key as text; for roles with SELECT on its output table';

-- latest_prediction takes the key in its own type (42, a uuid, a date: the anycompatible
-- overload, which compares it with the output's key as PostgreSQL compares the two types,
-- so 42.5 matches no bigint key) or as text (a literal such as '42', a text value: the
-- text overload, which converts it to the key's type). PostgreSQL picks the text one for
-- a quoted literal and for text, varchar and unknown parameters, the other for the rest.
CREATE OR REPLACE FUNCTION @extschema@.latest_prediction(consumer_name text, key text) RETURNS real
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    o record := pgmodels._consumer_keyed_output(consumer_name);
    answer real;
BEGIN
    EXECUTE format('SELECT o.prediction FROM %s o WHERE o.key OPERATOR(pg_catalog.=) CAST($1 AS %s) '
                   'ORDER BY o.event_id DESC LIMIT 1', o.output, o.key_type) INTO answer USING key;
    RETURN answer;
END
$$;
COMMENT ON FUNCTION @extschema@.latest_prediction(text, text) IS 'the prediction a consumer made for the latest event with this key, given as text (converted to the key''s type), or NULL while there is none yet';

CREATE OR REPLACE FUNCTION @extschema@.latest_prediction(consumer_name text, key anycompatible) RETURNS real
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    o record := pgmodels._consumer_keyed_output(consumer_name);
    answer real;
BEGIN
    BEGIN
        -- a key of a string type (a text key, or an output made before 0.3.0) compares
        -- with the value's text form
        EXECUTE format('SELECT o.prediction FROM %s o WHERE o.key OPERATOR(pg_catalog.=) %s '
                       'ORDER BY o.event_id DESC LIMIT 1', o.output,
                       CASE WHEN (SELECT t.typcategory FROM pg_catalog.pg_type t WHERE t.oid = o.key_type) = 'S'
                            THEN format('CAST(CAST($1 AS pg_catalog.text) AS %s)', o.key_type) ELSE '$1' END)
            INTO answer USING key;
    EXCEPTION WHEN undefined_function THEN
        RAISE EXCEPTION 'key % is of type %, which does not compare with the keys of consumer "%"', key,
                pg_catalog.pg_typeof(key), consumer_name
            USING ERRCODE = '42883',
                  DETAIL = format('Its output table %s keeps its keys as %s.', o.output, o.key_type),
                  HINT = format('Pass the key as %s, or as text.', o.key_type);
    END;
    RETURN answer;
END
$$;
COMMENT ON FUNCTION @extschema@.latest_prediction(text, anycompatible) IS 'the prediction a consumer made for the latest event with this key, given in its own type (42, a uuid, a date), or NULL while there is none yet';

CREATE OR REPLACE FUNCTION @extschema@.drop_consumer(consumer_name text, drop_output boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    output regclass := pgmodels._consumer_drop(pgmodels._credential(), consumer_name);
BEGIN
    IF drop_output AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = output) THEN  -- as its owner
        EXECUTE format('DROP TABLE %s', output);
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.drop_consumer(text, boolean) IS 'removes a consumer and its dead letters; keeps its output table unless drop_output => true';

CREATE OR REPLACE FUNCTION @extschema@.drop_stream(stream_name text, cascade boolean DEFAULT false) RETURNS void
LANGUAGE sql VOLATILE
AS $$ SELECT pgmodels._stream_drop(pgmodels._credential(), $1, $2) $$;
COMMENT ON FUNCTION @extschema@.drop_stream(text, boolean) IS 'removes a stream: its trigger, its log, and with cascade => true its consumers (their output tables stay)';

CREATE OR REPLACE FUNCTION @extschema@.stream_maintenance(stream_name text DEFAULT NULL) RETURNS TABLE (stream text, done text)
LANGUAGE sql VOLATILE
AS $$
    SELECT s.name, pgmodels._stream_maintain(pgmodels._credential(), s.stream_id) FROM pgmodels.streams s
     WHERE ($1 IS NULL OR s.name = $1)
       AND (pg_catalog.pg_has_role(pgmodels._me(), s.owner::regrole, 'USAGE')
            OR EXISTS (SELECT 1 FROM pgmodels.stream_consumers c WHERE c.stream = s.name))
$$;
COMMENT ON FUNCTION @extschema@.stream_maintenance(text) IS 'rotates the logs of the streams the current role owns or consumes and empties the parts every consumer is past; workers run it, and pg_cron can; in READ COMMITTED';

CREATE OR REPLACE VIEW pgmodels.streams WITH (security_barrier) AS
SELECT s.name, s.id AS stream_id, s.owner::text AS owner, s.source::text AS relation, s.key_column,
       s.current_child, s.rotated_at, s.created_at,
       (SELECT count(*) FROM pgmodels.stream_consumer c WHERE c.stream_id = s.id) AS consumers
FROM pgmodels.stream s
WHERE pg_catalog.pg_has_role(pgmodels._me(), s.owner, 'USAGE')
   OR pg_catalog.has_table_privilege(pgmodels._me(), s.source, 'SELECT');
COMMENT ON VIEW pgmodels.streams IS 'the streams the current role owns or may consume (it may read their table)';
GRANT SELECT ON pgmodels.streams TO PUBLIC;

CREATE OR REPLACE VIEW pgmodels.stream_consumers WITH (security_barrier) AS
SELECT c.name AS consumer, s.name AS stream, p.name AS project, c.owner::text AS owner, c.output::text AS output,
       c.enrich::text AS enrich_relation, c.enrich_key, 'pgmodels_consumer_' || c.id AS channel, c.partitions,
       c.events_processed, lag.pending AS events_pending, clock_timestamp() - lag.oldest AS oldest_pending_age,
       c.failures, c.last_event_id, c.last_activity, c.created_at
FROM pgmodels.stream_consumer c
JOIN pgmodels.stream s ON s.id = c.stream_id
JOIN pgmodels.projects p ON p.id = c.project_id
CROSS JOIN LATERAL pgmodels._consumer_lag(c.id, pgmodels._credential()) lag
WHERE pg_catalog.pg_has_role(pgmodels._me(), c.owner, 'USAGE') OR pg_catalog.pg_has_role(pgmodels._me(), s.owner, 'USAGE');
COMMENT ON VIEW pgmodels.stream_consumers IS 'per consumer the current role owns (or whose stream it owns): events processed, events pending, the oldest pending event''s age, failures (dead letters), last activity, and the channel subscribers LISTEN on';
GRANT SELECT ON pgmodels.stream_consumers TO PUBLIC;

CREATE OR REPLACE VIEW pgmodels.stream_consumer_history WITH (security_barrier) AS
SELECT c.name AS consumer, x.at, x.events_processed, x.events_pending
FROM pgmodels.stream_consumer_sample x
JOIN pgmodels.stream_consumer c ON c.id = x.consumer_id
JOIN pgmodels.stream s ON s.id = c.stream_id
WHERE pg_catalog.pg_has_role(pgmodels._me(), c.owner, 'USAGE') OR pg_catalog.pg_has_role(pgmodels._me(), s.owner, 'USAGE');
COMMENT ON VIEW pgmodels.stream_consumer_history IS 'per consumer the current role owns (or whose stream it owns): events processed and pending over the last day, sampled every 30 seconds at most while a worker runs';
GRANT SELECT ON pgmodels.stream_consumer_history TO PUBLIC;

CREATE OR REPLACE VIEW pgmodels.stream_dead_letters WITH (security_barrier) AS
SELECT c.name AS consumer, d.event_id, d.event_key, d.event, d.error, d.error_sqlstate, d.failed_at
FROM pgmodels.stream_dead_letter d JOIN pgmodels.stream_consumer c ON c.id = d.consumer_id
WHERE pg_catalog.pg_has_role(pgmodels._me(), c.owner, 'USAGE');
COMMENT ON VIEW pgmodels.stream_dead_letters IS 'the events the current role''s consumers could not score, with the error; the stream went on without them';
GRANT SELECT ON pgmodels.stream_dead_letters TO PUBLIC;

-- sql/078_stream_keys.sql
-- Streams: the key's type. The log keeps each event's key as text (sql/075: the capture
-- trigger writes it in a fixed form, ISO dates in UTC and exact floats, and partitions
-- hash it); a consumer's output table keeps it in the type of the stream's key column, so
-- that it joins back to the stream's table and orders as a number or a date does. The key
-- goes back to its type where the output row is written (python_udfs/pgmodels/stream/
-- process.py), as the consumer's owner, and only into a built-in type: a built-in type's
-- input function is all that runs, never a cast a role defined.

-- The type of a column that may be an output's key: a built-in base type (only a superuser
-- can add a cast from or to one) of the number, string, date and time, boolean or other
-- built-in (uuid, bytea, ...) categories, with a default btree operator class (an output
-- orders and indexes its keys); NULL for any other type (and for no such column).
CREATE OR REPLACE FUNCTION pgmodels._key_type(relation oid, column_name name) RETURNS regtype
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT t.oid::pg_catalog.regtype FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
     WHERE a.attrelid = $1 AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped
       AND t.oid < 16384  -- FirstNormalObjectId: made by initdb
       AND t.typnamespace = 'pg_catalog'::pg_catalog.regnamespace AND t.typtype = 'b'
       AND t.typcategory IN ('N', 'S', 'D', 'U', 'B')
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_opclass o JOIN pg_catalog.pg_am m ON m.oid = o.opcmethod
                    WHERE m.amname = 'btree' AND o.opcdefault
                      AND (o.opcintype = t.oid
                           OR EXISTS (SELECT 1 FROM pg_catalog.pg_cast c
                                       WHERE c.castsource = t.oid AND c.casttarget = o.opcintype
                                         AND c.castmethod = 'b' AND c.castcontext = 'i')))
$$;
COMMENT ON FUNCTION pgmodels._key_type(oid, name) IS 'internal: the type of a column if it can be the key of a stream consumer''s output (a built-in base type with a btree order), else NULL';

-- An output table made before 0.3.0 keeps every key as text. The upgrade gives its key
-- column the type of the stream's key column (ALTER TABLE ... USING key::type), as the
-- consumer's owner. Rewriting a table re-checks its constraints and rebuilds its indexes,
-- and code the owner wrote there would run inside the upgrade's session, whose session
-- user is a superuser: SET ROLE is no wall there (the code can RESET ROLE). So only a
-- table where the rewrite evaluates nothing of the owner's is converted: no CHECK,
-- foreign key or exclusion constraint, no index on an expression or with a predicate, no
-- generated column, no child table; the others keep text and a NOTICE gives their owner
-- the statement to run. An output whose stream's table or key column is gone, or whose
-- keys do not convert (a key column whose type changed since, a view over the output that
-- uses the column), keeps text too, and a NOTICE says why; latest_prediction and
-- read_predictions work on it as they did. Not a definer: the upgrade (a superuser) runs
-- it. Returns what it did, NULL when there was nothing to do.
CREATE OR REPLACE FUNCTION pgmodels._consumer_key_retype(consumer_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record;
    want text;
    before text := current_setting('role');
    owner_name name;
    message text;
BEGIN
    SELECT x.name, x.owner, x.output, s.name AS stream, s.source, s.key_column INTO c
      FROM pgmodels.stream_consumer x JOIN pgmodels.stream s ON s.id = x.stream_id
     WHERE x.id = consumer_id;
    IF c.name IS NULL OR c.key_column IS NULL
       OR NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.output AND a.attname = 'key' AND a.attnum > 0
                         AND NOT a.attisdropped AND a.atttypid = 'text'::regtype) THEN
        RETURN NULL;  -- no such consumer, a stream without a key (text is right), or a key not text
    END IF;
    SELECT format_type(a.atttypid, a.atttypmod) INTO want FROM pg_attribute a
     WHERE a.attrelid = c.source AND a.attname = c.key_column AND a.attnum > 0 AND NOT a.attisdropped
       AND pgmodels._key_type(c.source, c.key_column) IS NOT NULL;
    IF want IS NULL THEN
        IF pgmodels._key_type(c.source, c.key_column) IS NULL
           AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.source AND a.attname = c.key_column
                          AND a.attnum > 0 AND NOT a.attisdropped) THEN
            RETURN NULL;  -- a key type without an order (json, say): its output keeps text, as a new one would
        END IF;
        RAISE WARNING 'output table % of consumer "%" keeps its keys as text', c.output::regclass, c.name
            USING DETAIL = format('The table of stream "%s" or its key column "%s" is gone: the type its keys had is unknown.',
                                  c.stream, c.key_column);
        RETURN 'kept text: the stream''s table or key column is gone';
    ELSIF want = 'text' THEN
        RETURN NULL;
    END IF;
    SELECT r.rolname INTO owner_name FROM pg_roles r WHERE r.oid = c.owner;
    SELECT string_agg(w.what, ', ' ORDER BY w.what) INTO message FROM (
        SELECT 'a CHECK, foreign key or exclusion constraint' AS what FROM pg_constraint k
         WHERE k.conrelid = c.output AND k.contype OPERATOR(pg_catalog.=) ANY (ARRAY['c', 'f', 'x']::"char"[])
        UNION SELECT 'an index on an expression or with a predicate' FROM pg_index i
         WHERE i.indrelid = c.output AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL)
        UNION SELECT 'a generated column' FROM pg_attribute a
         WHERE a.attrelid = c.output AND a.attgenerated OPERATOR(pg_catalog.<>) ''::"char" AND NOT a.attisdropped
        UNION SELECT 'child tables' FROM pg_inherits h WHERE h.inhparent = c.output) w;
    IF message IS NOT NULL THEN
        RAISE WARNING 'output table % of consumer "%" keeps its keys as text', c.output::regclass, c.name
            USING DETAIL = format('It has %s: converting it would run its owner''s code inside the upgrade''s session.',
                                  message),
                  HINT = format('latest_prediction and read_predictions work on it as it is; its owner can convert it: ALTER TABLE %s ALTER COLUMN key TYPE %s USING key::%s.',
                                c.output::regclass, want, want);
        RETURN format('kept text: it has %s', message);
    END IF;
    BEGIN
        IF owner_name IS NULL THEN
            RAISE EXCEPTION 'its owner, role %, is gone', c.owner::oid;
        END IF;
        PERFORM set_config('role', owner_name, true);
        EXECUTE format('ALTER TABLE %s ALTER COLUMN key TYPE %s USING key::%s', c.output::regclass, want, want);
        PERFORM set_config('role', before, true);
    EXCEPTION WHEN OTHERS THEN  -- undone, the role included
        GET STACKED DIAGNOSTICS message = MESSAGE_TEXT;
        RAISE WARNING 'output table % of consumer "%" keeps its keys as text', c.output::regclass, c.name
            USING DETAIL = format('Its key column could not become %s, the type of the key column "%s" of stream "%s": %s.',
                                  want, c.key_column, c.stream, message),
                  HINT = format('latest_prediction and read_predictions work on it as it is; once its keys convert, its owner runs ALTER TABLE %s ALTER COLUMN key TYPE %s USING key::%s.',
                                c.output::regclass, want, want);
        RETURN format('kept text: %s', message);
    END;
    RETURN format('key is now %s', want);
END
$$;
COMMENT ON FUNCTION pgmodels._consumer_key_retype(bigint) IS 'internal: gives a consumer''s output table made before 0.3.0 (keys as text) the type of its stream''s key column, as the consumer''s owner, or says in a NOTICE why it keeps text; run by the upgrade';

-- The upgrade from 0.2.0 converts the output tables of the consumers it has (a new
-- install has none; a later run finds nothing left to convert).
DO $keys$
BEGIN
    PERFORM pgmodels._consumer_key_retype(x.id) FROM pgmodels.stream_consumer x ORDER BY x.id;
END
$keys$;

-- sql/080_proxy.sql
-- Request-response serving: what `pgmodels serve` (python_udfs/pgmodels/proxy/) needs in
-- the database. API tokens, stored hashed, each naming the role its requests run as;
-- feature sources, the relation a project's features are read from by key; and the
-- metadata the Open Inference Protocol describes a model with.
--
-- The proxy holds no model and no privilege of its own: each request runs in a
-- transaction under SET LOCAL ROLE <the token's role>, so predict() and the relations of
-- the feature sources see exactly that role's grants.

-- Tokens. Only the sha256 of a token is stored; the token is shown once, by
-- create_api_token. (Tables run as they are in the 0.1.0 -> 0.2.0 upgrade too.)

-- Whether a role may manage another role's tokens: a member of it, or a superuser.
CREATE OR REPLACE FUNCTION pgmodels._may_manage_tokens(caller oid, token_role oid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = caller AND r.rolsuper)
        OR (EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = token_role) AND pg_has_role(caller, token_role, 'MEMBER'))
$$;
COMMENT ON FUNCTION pgmodels._may_manage_tokens(oid, oid) IS 'internal: whether a role may create and revoke API tokens for another: a member of it, or a superuser';

-- Definer: it writes the token table. The caller must be a member of the role (so a
-- token never runs as a role its creator could not SET ROLE to) or a superuser; a
-- superuser role gets no token, since its requests would bypass every grant.
CREATE OR REPLACE FUNCTION pgmodels._create_api_token(role_name name, credential text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    target pg_roles;
    new_id bigint;
    secret text;
BEGIN
    SELECT r.* INTO target FROM pg_roles r WHERE r.rolname = role_name;
    IF target.oid IS NULL THEN
        RAISE EXCEPTION 'role "%" does not exist', role_name USING ERRCODE = '42704';
    END IF;
    IF target.rolsuper THEN
        RAISE EXCEPTION 'cannot create an API token for superuser role "%"', role_name
            USING ERRCODE = '42501',
                  DETAIL = 'A token''s requests run as its role, and a superuser bypasses every privilege.',
                  HINT = 'Create a role with only what the service needs, grant it predict on the projects it serves, and make its token.';
    END IF;
    IF NOT pgmodels._may_manage_tokens(caller, target.oid) THEN
        RAISE EXCEPTION 'permission denied to create an API token for role "%"', role_name
            USING ERRCODE = '42501',
                  DETAIL = 'Only members of a role, and superusers, may create its tokens.';
    END IF;
    secret := replace(gen_random_uuid()::text || gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
    -- the token names its id, so that it can be listed and revoked without being shown again
    new_id := nextval('pgmodels._api_tokens_id_seq');
    INSERT INTO pgmodels._api_tokens (id, token_sha256, role)
    VALUES (new_id, sha256(convert_to('pgm_' || new_id || '_' || secret, 'UTF8')), target.oid::regrole);
    RETURN 'pgm_' || new_id || '_' || secret;
END
$$;
COMMENT ON FUNCTION pgmodels._create_api_token(name, text) IS 'internal: the core of create_api_token() (definer: only it writes the token table)';

CREATE OR REPLACE FUNCTION @extschema@.create_api_token(role_name name) RETURNS text
LANGUAGE sql VOLATILE
AS $$ SELECT pgmodels._create_api_token($1, pgmodels._credential()) $$;
COMMENT ON FUNCTION @extschema@.create_api_token(name) IS 'a new bearer token for pgmodels serve whose requests run as the role (shown once, stored hashed); for members of the role and superusers';

-- Definer: it deletes from the token table. By id, for whoever may manage the role's
-- tokens; by the token itself, for whoever holds it.
CREATE OR REPLACE FUNCTION pgmodels._revoke_api_token(token_id bigint, token text, credential text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    found pgmodels._api_tokens;
BEGIN
    IF token IS NOT NULL THEN
        DELETE FROM pgmodels._api_tokens t WHERE t.token_sha256 = sha256(convert_to(token, 'UTF8')) RETURNING * INTO found;
        RETURN found.id IS NOT NULL;
    END IF;
    SELECT t.* INTO found FROM pgmodels._api_tokens t WHERE t.id = token_id FOR UPDATE;
    IF found.id IS NULL THEN
        RETURN false;
    END IF;
    IF NOT pgmodels._may_manage_tokens(caller, found.role) THEN
        RAISE EXCEPTION 'permission denied to revoke API token %', token_id
            USING ERRCODE = '42501',
                  DETAIL = 'Only members of a token''s role, and superusers, may revoke it by id.';
    END IF;
    DELETE FROM pgmodels._api_tokens t WHERE t.id = token_id;
    RETURN true;
END
$$;
COMMENT ON FUNCTION pgmodels._revoke_api_token(bigint, text, text) IS 'internal: the core of revoke_api_token() (definer: only it writes the token table)';

CREATE OR REPLACE FUNCTION @extschema@.revoke_api_token(token_id bigint) RETURNS boolean
LANGUAGE sql VOLATILE STRICT
AS $$ SELECT pgmodels._revoke_api_token($1, NULL, pgmodels._credential()) $$;
COMMENT ON FUNCTION @extschema@.revoke_api_token(bigint) IS 'revokes an API token by its id (see pgmodels.api_tokens); true if there was one; for members of its role and superusers';

CREATE OR REPLACE FUNCTION @extschema@.revoke_api_token(token text) RETURNS boolean
LANGUAGE sql VOLATILE STRICT
AS $$ SELECT pgmodels._revoke_api_token(NULL, $1, pgmodels._credential()) $$;
COMMENT ON FUNCTION @extschema@.revoke_api_token(text) IS 'revokes an API token given itself; true if it was valid';

-- Definer: the proxy asks which role a token's requests run as. Open to PUBLIC: it
-- answers only to whoever already holds the token, and never with a superuser.
CREATE OR REPLACE FUNCTION pgmodels._api_token_role(token text) RETURNS name
LANGUAGE sql STABLE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.rolname FROM pgmodels._api_tokens t JOIN pg_roles r ON r.oid = t.role
     WHERE t.token_sha256 = sha256(convert_to(token, 'UTF8')) AND NOT r.rolsuper
$$;
COMMENT ON FUNCTION pgmodels._api_token_role(text) IS 'internal: the role an API token''s requests run as, or NULL for an unknown or revoked token';

CREATE OR REPLACE VIEW pgmodels.api_tokens WITH (security_barrier) AS
SELECT t.id, t.role::text AS role, t.created_by, t.created_at
FROM pgmodels._api_tokens t
WHERE pgmodels._may_manage_tokens(pgmodels._me(), t.role);
COMMENT ON VIEW pgmodels.api_tokens IS 'the API tokens of the roles the current role is a member of (all of them for a superuser): id, role, who created it when; never the token';
GRANT SELECT ON pgmodels.api_tokens TO PUBLIC;

-- Feature sources: the owner's. The wrapper resolves the relation in the caller's
-- search_path; the core checks ownership, the relation and the key column.
CREATE OR REPLACE FUNCTION pgmodels._register_feature_source(project_name text, relation regclass, relation_text text,
                                                             key_column text, credential text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    proj pgmodels.projects;
    rel pg_class;
BEGIN
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.name = project_name FOR UPDATE;
    IF proj.id IS NULL THEN
        RAISE EXCEPTION 'project "%" does not exist', project_name USING ERRCODE = '42704';
    END IF;
    PERFORM pgmodels._require_owner(caller, proj);
    SELECT c.* INTO rel FROM pg_class c WHERE c.oid = relation;
    IF rel.oid IS NULL THEN
        RAISE EXCEPTION 'relation "%" does not exist', relation_text USING ERRCODE = '42P01';
    ELSIF rel.relpersistence = 't' THEN
        RAISE EXCEPTION 'a feature source cannot be a temporary relation' USING ERRCODE = '0A000',
            DETAIL = 'The proxy reads it from other sessions.';
    ELSIF rel.relkind NOT IN ('r', 'v', 'm', 'p', 'f') THEN
        RAISE EXCEPTION '"%" is not a table or view', relation_text USING ERRCODE = '42809';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = rel.oid AND a.attname = key_column
                                                  AND a.attnum > 0 AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'column "%" of relation "%" does not exist', key_column, relation_text USING ERRCODE = '42703';
    END IF;
    -- what every read checks again (pgmodels._feature_rows), said now; row-level security
    -- depends on the reading role, so only the read can tell
    PERFORM pgmodels._feature_source_check(rel.oid, key_column, false);
    INSERT INTO pgmodels.feature_sources (project_id, relation_schema, relation_name, key_column)
    VALUES (proj.id, rel.relnamespace::regnamespace::name, rel.relname, key_column)
    ON CONFLICT (project_id) DO UPDATE
       SET relation_schema = excluded.relation_schema, relation_name = excluded.relation_name,
           key_column = excluded.key_column, registered_by = excluded.registered_by, registered_at = excluded.registered_at;
END
$$;
COMMENT ON FUNCTION pgmodels._register_feature_source(text, regclass, text, text, text) IS 'internal: the core of register_feature_source() (definer: only it writes the feature sources)';

-- What pgmodels serve may read as a request's role. A request runs in the proxy's pooled
-- session under SET LOCAL ROLE, and a function another role wrote, run there, could RESET
-- ROLE and act as the proxy's login role (a superuser, often). Reading a view runs its
-- functions, a policy of row-level security is an expression, converting a value of a
-- type a role made can run that role's functions (its cast to json, a domain's check on
-- the key), and planning a read evaluates the relation's index expressions and
-- predicates, its statistics' expressions and (for constraint exclusion) its CHECK
-- constraints, where a function is called with constant arguments. So a feature source
-- is a table, materialized view or foreign table without partitions or child tables
-- (each would be planned too, and one can be attached while a request reads), without
-- row-level security for the reading role (reader), whose key column is of a built-in
-- type (made by initdb: oid below 16384, FirstNormalObjectId), whose other columns are of
-- built-in types or domains over them (to_jsonb reads a domain as its base type), and
-- whose indexes, statistics and CHECK constraints use only built-in functions, operators
-- and types. Returns the key column's type, as a cast names it. Volatile: each
-- query reads the catalog as it is after its own locks (the indexes are read last).
CREATE OR REPLACE FUNCTION pgmodels._feature_source_check(relation oid, key_column name, reader boolean)
RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel record;
    bad record;
    key_type text;
    why constant text := 'pgmodels serve reads a feature source as the request''s role inside its own pooled '
                         'session, where a function another role wrote could take the session''s login role '
                         '(RESET ROLE); so it reads nothing that runs such a function.';
BEGIN
    SELECT c.oid, c.relkind, c.oid::regclass::text AS display INTO rel FROM pg_class c WHERE c.oid = relation;
    IF rel.oid IS NULL THEN
        RAISE EXCEPTION 'relation with OID % does not exist', relation USING ERRCODE = '42P01';
    ELSIF rel.relkind NOT IN ('r', 'p', 'm', 'f') THEN
        RAISE EXCEPTION 'feature source % is not a table', rel.display USING ERRCODE = '55000',
            DETAIL = why || ' A view runs its functions when it is read.',
            HINT = 'Register a table or a materialized view (refreshed on your schedule) instead.';
    ELSIF rel.relkind = 'p' OR EXISTS (SELECT FROM pg_inherits i WHERE i.inhparent = relation) THEN
        RAISE EXCEPTION 'feature source % has partitions or child tables', rel.display USING ERRCODE = '55000',
            DETAIL = why || ' Reading it plans each partition or child, with indexes and statistics of their own, '
                     'and one can be attached while a request reads.',
            HINT = 'Register a materialized view of its rows (refreshed on your schedule) instead.';
    END IF;
    SELECT format_type(a.atttypid, a.atttypmod) INTO key_type FROM pg_attribute a
     WHERE a.attrelid = relation AND a.attname = key_column AND a.attnum > 0 AND NOT a.attisdropped
       AND a.atttypid < 16384;
    IF key_type IS NULL THEN
        IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = relation AND a.attname = key_column
                                                      AND a.attnum > 0 AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'column "%" of relation % does not exist', key_column, rel.display USING ERRCODE = '42703',
                DETAIL = 'It is the key column of the feature source.';
        END IF;
        RAISE EXCEPTION 'key column "%" of feature source % is not of a built-in type', key_column, rel.display
            USING ERRCODE = '55000',
                  DETAIL = why || ' A request''s keys are converted to the key column''s type, which for a type a role made (a domain with a check, say) runs its functions.',
                  HINT = 'Use a key column of a built-in type: an integer, text or uuid.';
    END IF;
    SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type INTO bad
      FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
     WHERE a.attrelid = relation AND a.attnum > 0 AND NOT a.attisdropped
       AND (CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END) >= 16384
     ORDER BY a.attnum LIMIT 1;
    IF bad.attname IS NOT NULL THEN
        RAISE EXCEPTION 'column "%" of feature source % is of type %, which pgmodels serve does not read',
                bad.attname, rel.display, bad.type
            USING ERRCODE = '55000',
                  DETAIL = why || ' Reading a value of a type a role made can run that role''s functions (a cast to json).',
                  HINT = 'Give the column a built-in type (text for an enum), or register a materialized view that converts it.';
    END IF;
    IF reader AND row_security_active(relation) THEN
        RAISE EXCEPTION 'feature source % has row-level security for role %', rel.display, current_user
            USING ERRCODE = '55000',
                  DETAIL = why || ' The policies of row-level security are expressions that run when the rows are read.',
                  HINT = 'Serve keys from a table without policies for this role: a materialized view of the rows it may see, say.';
    END IF;
    -- last: what the planner evaluates (an index's expressions and predicate, a statistics
    -- object's expressions, a CHECK constraint), by what each depends on
    SELECT o.what INTO bad
      FROM (SELECT 'pg_class'::regclass AS classid, i.indexrelid AS objid,
                   format('index %s', i.indexrelid::regclass) AS what
              FROM pg_index i WHERE i.indrelid = relation
            UNION ALL
            SELECT 'pg_statistic_ext'::regclass, x.oid, format('statistics object %s', x.stxname)
              FROM pg_statistic_ext x WHERE x.stxrelid = relation
            UNION ALL
            SELECT 'pg_constraint'::regclass, c.oid, format('constraint %s', c.conname)
              FROM pg_constraint c WHERE c.conrelid = relation) o
     WHERE EXISTS (SELECT FROM pg_depend d
                    WHERE d.classid = o.classid AND d.objid = o.objid AND d.refobjid >= 16384
                      AND d.refclassid IN ('pg_proc'::regclass, 'pg_operator'::regclass, 'pg_type'::regclass))
     LIMIT 1;
    IF bad.what IS NOT NULL THEN
        RAISE EXCEPTION 'the % of feature source % uses a function, operator or type a role made', bad.what, rel.display
            USING ERRCODE = '55000',
                  DETAIL = why || ' Planning a read evaluates the expressions and predicates of a relation''s indexes, its statistics objects and its CHECK constraints.',
                  HINT = 'Use built-in functions there, or register a materialized view (refreshed on your schedule) without such indexes instead.';
    END IF;
    RETURN key_type;
END
$$;
COMMENT ON FUNCTION pgmodels._feature_source_check(oid, name, boolean) IS 'internal: the feature source''s key type, or an error (55000) for a relation pgmodels serve does not read: a view, row-level security for the reading role, a column of a type a role made';

-- The rows of a feature source for a request's keys, read as the request's role (an
-- invoker function): locked first, then checked (so no ALTER comes between the check and
-- the read), then read. One row per key and match, in the keys' order: i (from 1), found,
-- and the row as jsonb (NULL when no row has the key).
CREATE OR REPLACE FUNCTION pgmodels._feature_rows(relation_schema name, relation_name name, key_column name, keys text[])
RETURNS TABLE (i bigint, found boolean, doc jsonb)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    relation oid := format('%I.%I', relation_schema, relation_name)::regclass;
    key_type text;
BEGIN
    -- a lock that plans and reads nothing, then the check: what holds now holds until the
    -- transaction ends (a view, a policy, a column type all change only under a lock that
    -- conflicts with this one). The read then plans this relation alone (ONLY).
    EXECUTE format('LOCK TABLE ONLY %I.%I IN ACCESS SHARE MODE', relation_schema, relation_name);
    key_type := pgmodels._feature_source_check(relation, key_column, true);
    RETURN QUERY EXECUTE format(
        'SELECT k.i, s.%1$I IS NOT NULL, CASE WHEN s.%1$I IS NOT NULL THEN pg_catalog.to_jsonb(s) END '
        'FROM pg_catalog.unnest($1) WITH ORDINALITY AS k(key, i) '
        'LEFT JOIN ONLY %2$I.%3$I AS s ON s.%1$I = k.key::%4$s ORDER BY k.i',
        key_column, relation_schema, relation_name, key_type) USING keys;
END
$$;
COMMENT ON FUNCTION pgmodels._feature_rows(name, name, name, text[]) IS 'internal: a feature source''s rows for keys, read with the caller''s rights once pgmodels._feature_source_check allows the relation (pgmodels serve''s keyed requests)';

CREATE OR REPLACE FUNCTION @extschema@.register_feature_source(project_name text, relation_name text, key_column text)
RETURNS void LANGUAGE sql VOLATILE STRICT
AS $$ SELECT pgmodels._register_feature_source($1, pg_catalog.to_regclass($2), $2, $3, pgmodels._credential()) $$;
COMMENT ON FUNCTION @extschema@.register_feature_source(text, text, text) IS 'names the table or view, and its key column, that pgmodels serve reads a project''s features from when a request sends keys; for the project''s owner (requests read it with their own role''s privileges)';

CREATE OR REPLACE VIEW pgmodels.project_feature_sources WITH (security_barrier) AS
SELECT p.name AS project, s.relation_schema, s.relation_name, s.key_column,
       -- by name through the catalogs, which anyone may read (to_regclass would need USAGE on
       -- the schema, and a role without it must still see its metadata, then get 403 on keys)
       (SELECT pg_catalog.format_type(a.atttypid, a.atttypmod)
          FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = s.relation_schema AND c.relname = s.relation_name
           AND a.attname = s.key_column AND NOT a.attisdropped) AS key_type,
       s.registered_by, s.registered_at
FROM pgmodels.feature_sources s JOIN pgmodels.projects p ON p.id = s.project_id
WHERE pgmodels._may(pgmodels._me(), p.id, 'use');
COMMENT ON VIEW pgmodels.project_feature_sources IS 'the feature source of each project the current role may use: relation, key column and its type';
GRANT SELECT ON pgmodels.project_feature_sources TO PUBLIC;

-- Definer: the catalog is not readable by PUBLIC. What the Open Inference Protocol's
-- model metadata shows, for a role that may use the project.
CREATE OR REPLACE FUNCTION pgmodels._model_metadata(project_name text, credential text) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    proj pgmodels.projects;
BEGIN
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.name = project_name;
    IF proj.id IS NULL THEN
        RAISE EXCEPTION 'project "%" does not exist', project_name USING ERRCODE = '42704';
    END IF;
    IF NOT pgmodels._may(caller, proj.id, 'use') THEN
        RAISE EXCEPTION 'permission denied for project "%"', proj.name
            USING ERRCODE = '42501',
                  DETAIL = format('Role "%s" has no privilege on it.', caller::regrole),
                  HINT = format('Its owner can grant it: SELECT grant_project(%L, %L, %L).', proj.name,
                                caller::regrole::text, 'predict');
    END IF;
    RETURN jsonb_build_object(
        'name', proj.name, 'task', proj.task,
        'deployed', (SELECT m.version FROM pgmodels.deployments d JOIN pgmodels.models m ON m.id = d.model_id
                      WHERE d.project_id = proj.id ORDER BY d.id DESC LIMIT 1),
        'versions', coalesce((SELECT jsonb_agg(jsonb_build_object(
                        'version', m.version, 'model_id', m.id, 'task', m.task, 'algorithm', m.algorithm,
                        'runtime', m.runtime, 'feature_names', to_jsonb(m.feature_names),
                        'feature_types', to_jsonb(m.feature_types), 'labels', m.labels,
                        'column_types', m.training -> 'column_types') ORDER BY m.version)
                      FROM pgmodels.models m WHERE m.project_id = proj.id), '[]'::jsonb),
        'feature_source', (SELECT jsonb_build_object('schema', s.relation_schema, 'relation', s.relation_name,
                                                     'key_column', s.key_column)
                             FROM pgmodels.feature_sources s WHERE s.project_id = proj.id));
END
$$;
COMMENT ON FUNCTION pgmodels._model_metadata(text, text) IS 'internal: a project''s versions, features, labels and feature source, for a role that may use it (the Open Inference Protocol''s model metadata)';

-- sql/085_progress.sql
-- Progress of long work: train(), batch runs, stream catch-up (python_udfs/pgmodels/progress.py).
--
-- The backend doing the work sends each stage to its client as a message (NOTICE, or the
-- level the setting pgmodels.progress_level names: info, log, debug, warning, off) and
-- publishes it in its application_name, as SET LOCAL would:
--     pgmodels <operation> <stage>[ <step>/<steps>] <name>
-- PostgreSQL puts application_name in shared memory when it is set, so other sessions see
-- the stage in pg_stat_activity while the work runs, with nothing committed; the end of
-- the transaction gives the backend its own application_name back. This view reads the
-- stages back, for the backends whose queries the current role may see in
-- pg_stat_activity (its own roles', or all with pg_read_all_stats). application_name
-- keeps 63 bytes, so a long name is cut short there (the messages carry it whole).
CREATE OR REPLACE VIEW pgmodels.progress AS
SELECT a.pid,
       a.usename::text AS role,
       a.datname::text AS database,
       m[1] AS operation,
       m[5] AS name,
       m[2] AS stage,
       m[3]::bigint AS step,
       NULLIF(m[4], '')::bigint AS steps,
       a.query_start AS started,
       pg_catalog.clock_timestamp() - a.query_start AS elapsed,
       a.query
FROM pg_catalog.pg_stat_activity a
CROSS JOIN LATERAL pg_catalog.regexp_match(a.application_name,
                                           '^pgmodels (train|batch|stream) ([a-z_]+)(?: ([0-9]+)/([0-9]*))? (.+)$') m
WHERE m IS NOT NULL
  AND (pg_catalog.pg_has_role(a.usesysid, 'USAGE') OR pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE'));
COMMENT ON VIEW pgmodels.progress IS 'the long work running now (train, batch runs, stream catch-up) of the backends whose activity the current role may see: operation, project, job or consumer name, stage, step of steps (a search''s candidate, a batch chunk, a catch-up''s events), since when';
GRANT SELECT ON pgmodels.progress TO PUBLIC;

-- sql/090_grants.sql
-- Who may run what.
--
-- Training and importing are for the roles an administrator grants them to, e.g.
--   GRANT EXECUTE ON FUNCTION train(text, text, text, text, text, jsonb, text, jsonb,
--                                   jsonb, real, text, boolean, jsonb, boolean) TO analyst;
-- A project belongs to the role that first trained or imported it; only it (and its
-- members) train, import, deploy and grant there, so deploy() and grant_project() are
-- open to PUBLIC. Predicting and exporting need the project's predict or export
-- privilege (grant_project), and EXECUTE on pgmodels._lookup(text, bigint, text), which
-- PUBLIC has until an administrator revokes it: the master switch.
REVOKE EXECUTE ON FUNCTION
    @extschema@.train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean),
    @extschema@.import_onnx(text, bytea, text[], text, jsonb, text[], boolean)
FROM PUBLIC;
-- 0.1.0 revoked deploy() from PUBLIC; say it again so an upgraded database matches.
GRANT EXECUTE ON FUNCTION @extschema@.deploy(text, text, text), @extschema@.deploy(bigint) TO PUBLIC;

-- Internal functions are internal: PUBLIC may execute none of them but the ones below,
-- and tests/test_security.py lists exactly this set. Each is safe to call directly:
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA pgmodels FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    -- the serving cores, which the inlined predict wrappers call as the caller: they answer
    -- only from models _lookup loaded for this statement, and take no model from the caller
    -- (and the C one, which answers only from decisions the Python cache kept for the caller)
    pgmodels._predict_native(text, bigint, anyarray),
    pgmodels._predict_batch_native(text, bigint, real[]),
    pgmodels._predict(text, bigint, double precision[], double precision, boolean),
    pgmodels._predict(text, bigint, real[], double precision, boolean),
    pgmodels._predict(text, bigint, jsonb, double precision, boolean),
    pgmodels._predict_proba(text, bigint, double precision[], double precision, boolean),
    pgmodels._predict_proba(text, bigint, real[], double precision, boolean),
    pgmodels._predict_proba(text, bigint, jsonb, double precision, boolean),
    pgmodels._predict_label(text, bigint, double precision[], double precision, boolean),
    pgmodels._predict_label(text, bigint, real[], double precision, boolean),
    pgmodels._predict_label(text, bigint, jsonb, double precision, boolean),
    pgmodels._predict_batch(text, bigint, bytea, double precision, boolean),
    -- the gate: it checks the caller's credential and privilege itself (the master switch);
    -- the four-argument form checks EXECUTE on the three-argument one too
    pgmodels._lookup(text, bigint, text),
    pgmodels._lookup(text, bigint, text, boolean),
    -- error reporting: each statement reads only its own pending error
    pgmodels._pending_error(double precision),
    pgmodels._raise_pending(anyelement),
    -- who is asking: a credential only for current_user and this statement
    pgmodels._stamp(),
    pgmodels._me(),
    pgmodels._credential(),
    -- answers about privileges and metrics, as has_table_privilege does (the views use them)
    pgmodels._may(oid, bigint, text),
    pgmodels._key_metric(text, jsonb),
    -- the administrator's settings: activates only the configured environment, and shows
    -- pgmodels.* settings and whether pg_cron is loaded
    pgmodels._activate(),
    pgmodels._admin_setting(text),
    pgmodels._cron_status(),
    pgmodels._doctor(),
    pgmodels.doctor(),
    -- cores that check the caller themselves: EXECUTE on train() or import_onnx(), or a
    -- credential and project ownership, or a model this backend just staged
    pgmodels._train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean),
    pgmodels._import_onnx(text, bytea, text[], text, jsonb, text[], boolean),
    pgmodels._store_model(text),
    pgmodels._project_info(text, text),
    pgmodels._deploy_strategy(text, text, text, text),
    pgmodels._deploy_model(bigint, text),
    pgmodels._deployed(bigint, text),
    pgmodels._grant_project(text, text, text, boolean, text),
    pgmodels._export(text, bigint, text),
    -- request-response serving (sql/080_proxy.sql): cores that check the caller's
    -- credential themselves, and the token lookup, which answers only the token's holder
    pgmodels._create_api_token(name, text),
    pgmodels._revoke_api_token(bigint, text, text),
    pgmodels._may_manage_tokens(oid, oid),
    pgmodels._api_token_role(text),
    pgmodels._register_feature_source(text, regclass, text, text, text),
    pgmodels._model_metadata(text, text),
    -- the keyed read of the proxy: an invoker function (the caller's own rights) that reads
    -- only relations whose reading runs no function a role wrote; its check reads the catalog
    pgmodels._feature_rows(name, name, name, text[]),
    pgmodels._feature_source_check(oid, name, boolean)
TO PUBLIC;

-- Batch jobs (sql/070-072). Creating and altering a job (which schedules with pg_cron)
-- are for the roles an administrator grants them to; running and dropping one are for
-- its owner, whoever that is, so they are open to PUBLIC.
REVOKE EXECUTE ON FUNCTION
    @extschema@.create_batch_job(text, text, text, text, text, text, text, text[], integer, integer, interval, interval),
    @extschema@.alter_batch_job(text, text, integer, integer, interval, interval, boolean)
FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE @extschema@.run_batch_job(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.drop_batch_job(text, boolean) TO PUBLIC;
GRANT EXECUTE ON FUNCTION
    -- the vectorized core: like the other cores, it answers only from models _lookup
    -- loaded for this statement; and the error of a bad array feature
    pgmodels._score_rows(text, bigint, bytea, text[], text[], double precision, boolean),
    pgmodels._bad_array_feature(text, integer, integer),
    -- the deployed model's features, for a caller that may predict with it (credential)
    pgmodels._serving_model(text, bigint, text),
    -- the batch cores: create checks EXECUTE on create_batch_job() itself, alter on
    -- alter_batch_job(); each acts only on jobs of the credential's role
    pgmodels._create_batch_job(text, text, text, text, text, text, text, text[], integer, integer, interval, interval),
    pgmodels._batch_create(text, text, text, oid, name, oid, name, text[], integer, text, integer, interval, interval),
    pgmodels._batch_owned(text, text, boolean),
    pgmodels._batch_alter(text, text, text, boolean, integer, integer, interval, interval),
    pgmodels._batch_drop(text, text),
    pgmodels._batch_run_begin(text, text, text, text, bigint, integer, text, bigint, integer, text, text, text, text),
    pgmodels._batch_run_chunk(text, bigint, bigint, text, text),
    pgmodels._batch_run_end(text, bigint, text, bigint, text, text, text, text),
    pgmodels._batch_release(text, text),
    -- whether a run's backend still lives (the batch_runs view uses it)
    pgmodels._backend_alive(integer, timestamptz),
    -- the pg_cron entry made by hand that runs a job (the batch_jobs view uses it): for the
    -- job's owner only, by credential
    pgmodels._cron_entry(text, bigint),
    pgmodels._batch_check_settings(integer, integer, interval, interval),
    -- a name's check (sql/065_modes.sql)
    pgmodels._check_name(text, text)
TO PUBLIC;
GRANT EXECUTE ON PROCEDURE pgmodels._run_batch_job(text) TO PUBLIC;

-- Streams (sql/075-077). Making a table a stream and adding a consumer are for the roles
-- an administrator grants them to; the rest acts on what the caller owns (or, to read
-- predictions, on output tables it may read), so it is open to PUBLIC.
REVOKE EXECUTE ON FUNCTION
    @extschema@.create_stream(text, text, text),
    @extschema@.add_consumer(text, text, text, text, text, text, boolean, integer)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    -- the stream cores: each checks the credential, the caller's ownership or privileges,
    -- and EXECUTE on create_stream() or add_consumer() where it makes something
    pgmodels._stream_get(text, text, boolean),
    pgmodels._stream_create(text, text, oid, name),
    pgmodels._stream_drop(text, text, boolean),
    pgmodels._consumer_add(text, text, text, text, oid, oid, name, boolean, integer),
    pgmodels._add_consumer(text, text, text, text, text, text, boolean, integer),
    pgmodels._consumer_get(text, text, boolean, integer[]),
    pgmodels._consumer_advance(text, bigint, integer, bigint, boolean, bigint, bigint),
    pgmodels._consumer_dead_letters(text, bigint, bigint[], text[], jsonb[], text[], text[]),
    pgmodels._consumer_drop(text, text),
    pgmodels._process_stream(text, integer),
    pgmodels._stream_waiting(text, text[], boolean),
    pgmodels._stream_inflight(bigint[]),
    -- maintenance (for owners) only removes events no consumer needs; the log's policy
    -- answers as has_table_privilege does; the lag answers only owners; a
    -- consumer's output table and channel are not secret
    pgmodels._stream_maintain(text, bigint),
    pgmodels._may_consume(bigint, oid),
    pgmodels._consumer_lag(bigint, text),
    pgmodels._consumer_output(text),
    -- a column's type if it may be an output's key, and an output's key type (invokers:
    -- they read the catalog as the caller)
    pgmodels._key_type(oid, name),
    pgmodels._consumer_keyed_output(text)
TO PUBLIC;

-- sql/100_monitor_views.sql
-- The functions and views of 100_monitor_catalog.sql (created once: tables and types), which
-- every upgrade replays (CREATE OR REPLACE).

-- The views: rows of the projects the current role may use (security_barrier, read with
-- the owner's rights, filtered by current_user), as pgmodels.overview does. A report's
-- statistics and status (every metric, the current shares over the reference's bins and
-- categories, which name the training categories) describe the training rows: the reports
-- are for the project's owner and the roles granted monitor, as drift() is.
CREATE OR REPLACE VIEW pgmodels.drift_reports WITH (security_barrier) AS
SELECT r.id, p.name AS project, r.model_id, r.model_version, r.relation, r.time_column, r.window_start,
       r.window_end, r.rows, r.status, r.drifted, r.features, r.thresholds, r.retrain, r.monitor_id,
       r.created_by, r.created_at
FROM pgmodels.drift_report r JOIN pgmodels.projects p ON p.id = r.project_id
WHERE pgmodels._may(pgmodels._me(), p.id, 'monitor');
COMMENT ON VIEW pgmodels.drift_reports IS 'drift reports of the projects the current role owns or was granted monitor on: window, model version, status, drifted features, every metric (features jsonb) and the retrain decision';

CREATE OR REPLACE VIEW pgmodels.drift_report_features WITH (security_barrier) AS
SELECT r.id AS report_id, p.name AS project, r.model_version, r.created_at, f ->> 'feature' AS feature,
       f ->> 'kind' AS kind, (f ->> 'rows')::bigint AS rows, (f ->> 'psi')::double precision AS psi,
       (f ->> 'ks_statistic')::double precision AS ks_statistic, (f ->> 'p_value')::double precision AS p_value,
       (f ->> 'null_rate_change')::double precision AS null_rate_change, f ->> 'status' AS status
FROM pgmodels.drift_report r JOIN pgmodels.projects p ON p.id = r.project_id
CROSS JOIN LATERAL jsonb_array_elements(r.features) f
WHERE pgmodels._may(pgmodels._me(), p.id, 'monitor');
COMMENT ON VIEW pgmodels.drift_report_features IS 'one row per feature of each drift report (the history of a feature''s PSI), for the projects the current role owns or was granted monitor on';

CREATE OR REPLACE VIEW pgmodels.monitors WITH (security_barrier) AS
SELECT m.id, p.name AS project, m.relation::text AS relation, m.time_column, m.schedule, m.retrain,
       m.owner::text AS owner, m.cron_job_id, m.last_window_end, m.created_at,
       CASE WHEN pgmodels._may(pgmodels._me(), p.id, 'monitor')
            THEN (SELECT r.status FROM pgmodels.drift_report r WHERE r.monitor_id = m.id ORDER BY r.id DESC LIMIT 1)
       END AS last_status,
       m.retrain_with
FROM pgmodels.monitor m JOIN pgmodels.projects p ON p.id = m.project_id
WHERE pgmodels._may(pgmodels._me(), p.id, 'use');
COMMENT ON VIEW pgmodels.monitors IS 'drift monitors of the projects the current role may use, with the status of their last report (for the project''s owner and the roles granted monitor) and what a retrain trains when not the deployed version''s algorithm, hyperparameters and preprocessing (set_monitor_retrain)';

GRANT SELECT ON pgmodels.drift_reports, pgmodels.drift_report_features, pgmodels.monitors TO PUBLIC;

-- The deployed (model_id 0) or given model, as drift() needs it, for a caller that may
-- predict with it, with the project's thresholds; not the profile itself (quantiles, min
-- and max, category values: details of the training rows that predict does not give;
-- _stage_profile hands it to drift()'s own code only, for the owner and monitor grantees).
-- Definer: the catalog is not readable by PUBLIC; the privilege check is _resolve's.
CREATE OR REPLACE FUNCTION pgmodels._drift_reference(project_name text, model_id bigint, credential text)
RETURNS TABLE (model_id bigint, project_id bigint, project text, version integer, task text, feature_names text[],
               feature_types text[], nullable text[], array_features jsonb, labels jsonb, has_profile boolean,
               y_column text, thresholds jsonb)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.id, m.project_id, (s.r).project, m.version, m.task, m.feature_names, m.feature_types, (s.r).nullable,
           m.training -> 'array_features', m.labels, (m.training -> 'profile') IS NOT NULL, m.training ->> 'y_column',
           jsonb_build_object('psi_warning', coalesce(ms.psi_warning, 0.1), 'psi_drift', coalesce(ms.psi_drift, 0.2),
                              'ks_alpha', coalesce(ms.ks_alpha, 0.01),
                              'ks_min_statistic', coalesce(ms.ks_min_statistic, 0.1),
                              'retrain_margin', coalesce(ms.retrain_margin, 0.0),
                              'min_holdout_rows', coalesce(ms.min_holdout_rows, 30),
                              'retrain_on', coalesce(ms.retrain_on, 'drift'))
      FROM (SELECT pgmodels._resolve($1, $2, pgmodels._verify_caller($3), 'predict', false) AS r) s
      JOIN pgmodels.models m ON m.id = (s.r).id
      LEFT JOIN pgmodels.monitor_settings ms ON ms.project_id = m.project_id
$$;
COMMENT ON FUNCTION pgmodels._drift_reference(text, bigint, text) IS 'internal: what drift() needs of a model (not its profile) and its project''s drift thresholds, for a caller that may predict with it';

-- The profile itself goes into the backend's Python state under a one-time token, never
-- back to the caller: drift()'s code takes it from there. A role that calls this directly
-- gets a token it can do nothing with (reading Python state needs plpython3u, a
-- superuser's language). It is staged only for a caller that may predict with the model
-- and owns its project or was granted monitor on it: the statistics drift() computes
-- from it over rows the caller chooses give the profile back (_require_monitor). Every
-- comparison with a training profile (drift(), a monitor's run) takes it from here.
-- Definer: it reads the catalog, after those checks (PL/pgSQL, so that a refusal reaches
-- the caller in PostgreSQL's words).
CREATE OR REPLACE FUNCTION pgmodels._stage_profile(model_id bigint, credential text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    m record;
BEGIN
    SELECT x.project_id, x.training -> 'profile' AS profile INTO m
      FROM pgmodels.models x WHERE x.id = (pgmodels._resolve('', model_id, caller, 'predict', false)).id;
    PERFORM pgmodels._require_monitor(caller, m.project_id);
    RETURN pgmodels._stage(m.profile);
END
$$;
COMMENT ON FUNCTION pgmodels._stage_profile(bigint, text) IS 'internal: stages a model''s reference profile in the backend for drift()''s code, for a caller that may predict with it and owns its project or was granted monitor on it; returns a one-time token';

-- Keeps a profile in the backend's Python state; only _stage_profile calls it.
CREATE OR REPLACE FUNCTION pgmodels._stage(profile jsonb) RETURNS text
LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.monitor.current import stage; return stage(profile)
$$;
COMMENT ON FUNCTION pgmodels._stage(jsonb) IS 'internal: keeps a reference profile in the backend under a one-time token; called by _stage_profile only, after its checks';
REVOKE EXECUTE ON FUNCTION pgmodels._stage(jsonb) FROM PUBLIC;  -- (created after sql/090_grants.sql revoked the rest)

-- Sets a project's thresholds: its owner's.
CREATE OR REPLACE FUNCTION pgmodels._set_monitor_thresholds(credential text, project_name text,
    psi_warning double precision, psi_drift double precision, ks_alpha double precision,
    ks_min_statistic double precision, retrain_margin double precision, min_holdout_rows integer,
    retrain_on text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    proj pgmodels.projects;
    s pgmodels.monitor_settings;
BEGIN
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.name = project_name;
    IF proj.id IS NULL THEN
        RAISE EXCEPTION 'project "%" does not exist', project_name USING ERRCODE = '42704';
    END IF;
    PERFORM pgmodels._require_owner(caller, proj);
    SELECT ms.* INTO s FROM pgmodels.monitor_settings ms WHERE ms.project_id = proj.id;
    s.project_id := proj.id;
    s.psi_warning := coalesce($3, s.psi_warning, 0.1);
    s.psi_drift := coalesce($4, s.psi_drift, 0.2);
    s.ks_alpha := coalesce($5, s.ks_alpha, 0.01);
    s.ks_min_statistic := coalesce($6, s.ks_min_statistic, 0.1);
    s.retrain_margin := coalesce($7, s.retrain_margin, 0.0);
    s.min_holdout_rows := coalesce($8, s.min_holdout_rows, 30);
    s.retrain_on := coalesce($9, s.retrain_on, 'drift');
    IF NOT (s.psi_warning > 0 AND s.psi_drift >= s.psi_warning AND s.psi_drift <= 10) THEN
        RAISE EXCEPTION 'invalid PSI thresholds: warning %, drift %', s.psi_warning, s.psi_drift USING ERRCODE = '22023',
            DETAIL = 'The warning threshold must be above 0 and at most the drift threshold, which is at most 10.',
            HINT = 'The defaults are 0.1 and 0.2.';
    ELSIF NOT (s.ks_alpha > 0 AND s.ks_alpha < 1) THEN
        RAISE EXCEPTION 'ks_alpha must be between 0 and 1, not %', s.ks_alpha USING ERRCODE = '22023',
            HINT = 'The default is 0.01.';
    ELSIF NOT (s.ks_min_statistic >= 0 AND s.ks_min_statistic <= 1) THEN
        RAISE EXCEPTION 'ks_min_statistic must be between 0 and 1, not %', s.ks_min_statistic USING ERRCODE = '22023';
    ELSIF NOT (s.retrain_margin >= 0 AND s.retrain_margin <= 1) THEN
        RAISE EXCEPTION 'retrain_margin must be between 0 and 1, not %', s.retrain_margin USING ERRCODE = '22023',
            DETAIL = 'It is how much the new model''s key metric must beat the deployed one''s by.';
    ELSIF s.retrain_on NOT IN ('drift', 'warning', 'always') THEN
        RAISE EXCEPTION 'retrain_on must be drift, warning or always, not "%"', s.retrain_on USING ERRCODE = '22023';
    ELSIF s.min_holdout_rows < 1 OR s.min_holdout_rows > 100000000 THEN
        RAISE EXCEPTION 'min_holdout_rows must be between 1 and 100000000, not %', s.min_holdout_rows USING ERRCODE = '22023';
    END IF;
    INSERT INTO pgmodels.monitor_settings SELECT s.*
        ON CONFLICT (project_id) DO UPDATE SET psi_warning = EXCLUDED.psi_warning, psi_drift = EXCLUDED.psi_drift,
            ks_alpha = EXCLUDED.ks_alpha, ks_min_statistic = EXCLUDED.ks_min_statistic,
            retrain_margin = EXCLUDED.retrain_margin, min_holdout_rows = EXCLUDED.min_holdout_rows,
            retrain_on = EXCLUDED.retrain_on;
    RETURN jsonb_build_object('psi_warning', s.psi_warning, 'psi_drift', s.psi_drift, 'ks_alpha', s.ks_alpha,
                              'ks_min_statistic', s.ks_min_statistic, 'retrain_margin', s.retrain_margin,
                              'min_holdout_rows', s.min_holdout_rows, 'retrain_on', s.retrain_on);
END
$$;
COMMENT ON FUNCTION pgmodels._set_monitor_thresholds(text, text, double precision, double precision, double precision, double precision, double precision, integer, text) IS 'internal: the core of set_monitor_thresholds() (definer: it writes the catalog for the project''s verified owner)';

-- What happened to each project, newest first: versions trained or imported,
-- deployments and rollbacks, drift reports (for the owner and monitor grantees, as
-- pgmodels.drift_reports), and every retrain decision with its reason (a failed or
-- rejected retrain included), for the projects the current role may use.
CREATE OR REPLACE VIEW pgmodels.history WITH (security_barrier) AS
SELECT e.project, e.at, e.event, e.model_id, e.version, e.detail
FROM (
    SELECT m.project_id, p.name AS project, m.trained_at AS at,
           CASE WHEN m.training ? 'retrain' THEN 'retrained' WHEN (m.training ->> 'imported')::boolean THEN 'imported'
                ELSE 'trained' END AS event,
           m.id AS model_id, m.version,
           format('%s, %s %s', m.algorithm, CASE m.task WHEN 'classification' THEN 'f1' ELSE 'r2' END,
                  coalesce(round(pgmodels._key_metric(m.task, m.metrics)::numeric, 4)::text, 'undefined')) AS detail
      FROM pgmodels.models m JOIN pgmodels.projects p ON p.id = m.project_id
    UNION ALL
    SELECT d.project_id, p.name, d.deployed_at, CASE d.strategy WHEN 'rollback' THEN 'rolled back' ELSE 'deployed' END,
           d.model_id, m.version, format('strategy %s, by %s', d.strategy, d.deployed_by)
      FROM pgmodels.deployments d JOIN pgmodels.projects p ON p.id = d.project_id
      JOIN pgmodels.models m ON m.id = d.model_id
    UNION ALL
    SELECT r.project_id, p.name, r.created_at, 'drift report ' || r.status, r.model_id, r.model_version,
           format('report %s on %s, %s rows%s', r.id, r.relation, r.rows,
                  CASE WHEN cardinality(r.drifted) > 0 THEN ', drifted: ' || array_to_string(r.drifted, ', ') ELSE '' END)
      FROM pgmodels.drift_report r JOIN pgmodels.projects p ON p.id = r.project_id
     WHERE pgmodels._may(pgmodels._me(), r.project_id, 'monitor')  -- as pgmodels.drift_reports
    UNION ALL
    SELECT r.project_id, p.name, r.created_at,
           CASE WHEN (r.retrain ->> 'deployed')::boolean THEN 'retrain deployed'
                WHEN r.retrain ? 'error' AND NOT r.retrain ? 'new_model_id' THEN 'retrain failed'
                WHEN NOT r.retrain ? 'new_model_id' THEN 'retrain skipped' ELSE 'retrain kept' END,
           (r.retrain ->> 'new_model_id')::bigint, (r.retrain ->> 'new_version')::integer,
           concat_ws('; ', r.retrain ->> 'reason', r.retrain ->> 'error', 'report ' || r.id)
      FROM pgmodels.drift_report r JOIN pgmodels.projects p ON p.id = r.project_id
     WHERE r.retrain IS NOT NULL
) e
WHERE pgmodels._may(pgmodels._me(), e.project_id, 'use');
COMMENT ON VIEW pgmodels.history IS 'what happened to each project the current role may use: versions trained, imported or retrained, deployments and rollbacks, drift reports (for its owner and monitor grantees), and every retrain decision with its reason';
GRANT SELECT ON pgmodels.history TO PUBLIC;

CREATE OR REPLACE VIEW pgmodels.request_logs WITH (security_barrier) AS
SELECT l.id, l.at, l.project, l.model_id, l.model_version, l.role, l.transport, l.request_id, l.rows, l.status,
       l.error, l.latency_ms
FROM pgmodels.request_log l
WHERE pgmodels._may(pgmodels._me(), l.project_id, 'owner');
COMMENT ON VIEW pgmodels.request_logs IS 'the logged requests of pgmodels serve to the projects the current role owns: which model version answered whom, when, how fast';
GRANT SELECT ON pgmodels.request_logs TO PUBLIC;

-- sql/101_monitor.sql
-- Monitoring, the user's side: drift(), set_reference(), set_monitor_thresholds(),
-- monitor(), run_monitor(), drop_monitor(), model_lineage(); and the definer functions
-- that write monitors and reports for a verified caller. See 100_monitor_catalog.sql.

-- A monitor, checked and scheduled. Definer: it writes the catalog and schedules with
-- pg_cron as the verified caller. It trusts nothing it is handed: the caller needs
-- EXECUTE on monitor() (an administrator's grant, like create_batch_job), the project's
-- ownership (its reports become part of the project's record, which every role that may
-- use the project reads), SELECT on the relation (and EXECUTE on train() for retrain,
-- which train() checks at each retrain).
CREATE OR REPLACE FUNCTION pgmodels._monitor_create(credential text, project_name text, relation oid,
                                                    time_column text, schedule text, retrain boolean)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    proj pgmodels.projects;
    mon pgmodels.monitor;
    entry bigint;
BEGIN
    PERFORM pgmodels._require_grant(caller, 'monitor(text, text, text, text, boolean)', 'monitor',
                                    'may schedule drift monitors');
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.name = project_name;
    IF proj.id IS NULL THEN
        RAISE EXCEPTION 'project "%" does not exist', project_name USING ERRCODE = '42704';
    END IF;
    PERFORM pgmodels._require_owner(caller, proj);
    IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = relation AND c.relkind IN ('r', 'p', 'v', 'm', 'f'))
       OR NOT has_table_privilege(caller, relation, 'SELECT')
          AND NOT has_any_column_privilege(caller, relation, 'SELECT') THEN
        RAISE EXCEPTION 'permission denied for relation %', relation::regclass USING ERRCODE = '42501',
            DETAIL = 'A monitor reads its relation with the rights of the role that creates it.';
    END IF;
    IF time_column IS NOT NULL AND NOT has_column_privilege(caller, relation, time_column, 'SELECT') THEN
        RAISE EXCEPTION 'permission denied for relation %', relation::regclass USING ERRCODE = '42501';
    END IF;
    IF schedule IS NOT NULL AND (btrim(schedule) = '' OR length(schedule) > 100) THEN
        RAISE EXCEPTION 'invalid cron schedule "%"', schedule USING ERRCODE = '22023',
            HINT = 'Use a five-field cron expression such as ''*/5 * * * *'', or NULL to run the monitor by hand.';
    END IF;
    SELECT m.* INTO mon FROM pgmodels.monitor m WHERE m.project_id = proj.id AND m.relation = $3 FOR UPDATE;
    IF mon.id IS NOT NULL THEN
        IF NOT pg_has_role(caller, mon.owner, 'USAGE') THEN
            RAISE EXCEPTION 'project "%" is already monitored on relation % by role "%"', project_name,
                relation::regclass, mon.owner USING ERRCODE = '42710',
                HINT = 'Its owner can drop_monitor() it.';
        END IF;
        PERFORM pgmodels._cron_unschedule(mon.cron_job_id);
        UPDATE pgmodels.monitor m SET time_column = $4, schedule = $5, retrain = $6, cron_job_id = NULL, owner = caller::regrole
         WHERE m.id = mon.id;
    ELSE
        INSERT INTO pgmodels.monitor (project_id, owner, relation, time_column, schedule, retrain)
        VALUES (proj.id, caller::regrole, $3, $4, $5, $6) RETURNING * INTO mon;
    END IF;
    IF schedule IS NOT NULL THEN
        entry := pgmodels._cron_schedule(
            format('pgmodels_monitor:%s:%s', (SELECT d.oid FROM pg_database d WHERE d.datname = current_database()), mon.id),
            schedule, format('SELECT %I.run_monitor(%s::bigint)', '@extschema@', mon.id), caller);
        UPDATE pgmodels.monitor m SET cron_job_id = entry WHERE m.id = mon.id;
    END IF;
    RETURN mon.id;
END
$$;
COMMENT ON FUNCTION pgmodels._monitor_create(text, text, oid, text, text, boolean) IS 'internal: the core of monitor() (definer: it writes the catalog and schedules with pg_cron as the verified caller)';

-- A monitor, for the role that owns it (itself, not a member): what a run needs.
CREATE OR REPLACE FUNCTION pgmodels._monitor_get(credential text, monitor_id bigint)
RETURNS TABLE (project text, relation oid, time_column text, retrain boolean, last_window_end timestamptz,
               now timestamptz, retrain_with jsonb)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    mon pgmodels.monitor;
BEGIN
    -- locked until the run's transaction ends: a second run of the monitor waits, then
    -- starts where this one's window ended
    SELECT m.* INTO mon FROM pgmodels.monitor m WHERE m.id = monitor_id FOR UPDATE;
    IF mon.id IS NULL THEN
        RAISE EXCEPTION 'monitor % does not exist', monitor_id USING ERRCODE = '42704',
            HINT = 'See pgmodels.monitors for the monitors there are.';
    ELSIF NOT pg_has_role(caller, mon.owner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of monitor %', monitor_id USING ERRCODE = '42501',
            DETAIL = format('It runs as role "%s", with that role''s rights.', mon.owner);
    ELSIF caller <> mon.owner THEN
        -- a run reads the owner's relation (a view's functions, casts of the types it made)
        -- with the rights of the role that runs it: only the owner itself, as pg_cron does
        RAISE EXCEPTION 'monitor % runs as role "%"', monitor_id, mon.owner USING ERRCODE = '42501',
            DETAIL = 'A run reads its relation with exactly its owner''s rights, and runs only as that role: another role''s rights would run code the owner wrote (a view''s functions, a cast of a type it made) with them.',
            HINT = format('Log in as role "%s" to run it, or let pg_cron run it on its schedule.', mon.owner);
    END IF;
    RETURN QUERY SELECT p.name, mon.relation::oid, mon.time_column::text, mon.retrain, mon.last_window_end,
                        statement_timestamp(), mon.retrain_with
                   FROM pgmodels.projects p WHERE p.id = mon.project_id;
END
$$;
COMMENT ON FUNCTION pgmodels._monitor_get(text, bigint) IS 'internal: a monitor''s settings, locked for a run, for its owner (definer: the catalog is not readable by PUBLIC)';

-- A report, written for the monitor's owner; NOTIFY on drift.
CREATE OR REPLACE FUNCTION pgmodels._drift_report_write(credential text, monitor_id bigint, model_id bigint,
    window_start timestamptz, window_end timestamptz, rows bigint, status text, drifted text[], features jsonb,
    thresholds jsonb)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    mon pgmodels.monitor;
    model pgmodels.models;
    report_id bigint;
BEGIN
    SELECT m.* INTO mon FROM pgmodels.monitor m WHERE m.id = monitor_id FOR UPDATE;
    IF mon.id IS NULL OR NOT pg_has_role(caller, mon.owner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of monitor %', monitor_id USING ERRCODE = '42501';
    END IF;
    SELECT m.* INTO model FROM pgmodels.models m WHERE m.id = $3 AND m.project_id = mon.project_id;
    IF model.id IS NULL OR NOT pgmodels._valid_drift_report(features, model.feature_names, status, drifted, rows)
       OR window_start > window_end THEN
        RAISE EXCEPTION 'invalid drift report' USING ERRCODE = '22023',
            DETAIL = 'A report names the monitor''s project''s model, one entry per feature with its metrics, and a status and drifted features that agree with them.';
    END IF;
    INSERT INTO pgmodels.drift_report (project_id, monitor_id, model_id, model_version, relation, time_column,
                                       window_start, window_end, rows, status, drifted, features, thresholds,
                                       created_by)
    VALUES (mon.project_id, mon.id, model.id, model.version, mon.relation::text, mon.time_column, $4, $5, $6, $7,
            coalesce($8, '{}'), $9, $10, caller::regrole::text)
    RETURNING id INTO report_id;
    IF mon.time_column IS NOT NULL THEN
        UPDATE pgmodels.monitor m SET last_window_end = $5 WHERE m.id = mon.id;
    END IF;
    IF status = 'drift' THEN
        PERFORM pg_notify('pgmodels_drift', json_build_object('project', (SELECT p.name FROM pgmodels.projects p
                                                                          WHERE p.id = mon.project_id),
                                                             'report_id', report_id, 'status', status)::text);
    END IF;
    RETURN report_id;
END
$$;
COMMENT ON FUNCTION pgmodels._drift_report_write(text, bigint, bigint, timestamptz, timestamptz, bigint, text, text[], jsonb, jsonb) IS 'internal: writes a monitor''s report for its verified owner and notifies channel pgmodels_drift on drift';

-- A retrain decision, recorded once on the report that caused it, for the owner of a
-- retraining monitor who owns its project. Checked against the catalog: the new model is
-- the one trained after this report, and "deployed" is what the deployments say.
CREATE OR REPLACE FUNCTION pgmodels._drift_report_decide(credential text, report_id bigint, decision jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    r pgmodels.drift_report;
    mon pgmodels.monitor;
    new_model pgmodels.models;
    current_id bigint;
BEGIN
    SELECT x.* INTO r FROM pgmodels.drift_report x WHERE x.id = report_id FOR UPDATE;
    SELECT m.* INTO mon FROM pgmodels.monitor m WHERE m.id = r.monitor_id;
    IF r.id IS NULL OR mon.id IS NULL OR NOT mon.retrain OR r.retrain IS NOT NULL
       OR NOT pg_has_role(caller, mon.owner, 'USAGE') OR NOT pgmodels._may(caller, r.project_id, 'owner') THEN
        RAISE EXCEPTION 'must be owner of the retraining monitor of drift report %', report_id USING ERRCODE = '42501';
    END IF;
    IF jsonb_typeof(decision) IS DISTINCT FROM 'object' OR jsonb_typeof(decision -> 'deployed') IS DISTINCT FROM 'boolean'
       OR length(decision::text) > 20000
       OR EXISTS (SELECT 1 FROM jsonb_each(decision) e
                   WHERE CASE WHEN e.key IN ('new_model_id', 'new_version', 'deployed_model_id', 'deployed_version', 'holdout_rows',
                                             'excluded_rows')
                              THEN jsonb_typeof(e.value) <> 'number' OR (e.value)::text !~ '^[0-9]{1,18}$'
                              WHEN e.key IN ('deployed_score', 'new_score', 'margin')
                              THEN jsonb_typeof(e.value) NOT IN ('number', 'null')
                                   OR (jsonb_typeof(e.value) = 'number' AND abs((e.value)::text::numeric) > 1e300)
                              WHEN e.key IN ('reason', 'error', 'sqlstate', 'metric', 'holdout', 'algorithm')
                              THEN jsonb_typeof(e.value) NOT IN ('string', 'null')
                              WHEN e.key = 'drifted' THEN jsonb_typeof(e.value) <> 'array'
                              ELSE e.key <> 'deployed' END) THEN
        RAISE EXCEPTION 'invalid retrain decision' USING ERRCODE = '22023';
    END IF;
    IF decision ? 'new_model_id' THEN
        SELECT m.* INTO new_model FROM pgmodels.models m
         WHERE m.id = (decision ->> 'new_model_id')::bigint AND m.project_id = r.project_id
           AND m.training -> 'retrain' ->> 'drift_report_id' = r.id::text;
        SELECT d.model_id INTO current_id FROM pgmodels.deployments d WHERE d.project_id = r.project_id
         ORDER BY d.id DESC LIMIT 1;
        IF new_model.id IS NULL OR (decision ->> 'new_version')::integer IS DISTINCT FROM new_model.version
           OR (decision ->> 'deployed')::boolean <> (current_id = new_model.id) THEN
            RAISE EXCEPTION 'invalid retrain decision' USING ERRCODE = '22023',
                DETAIL = 'The new model must be the version trained after this report, and "deployed" what the deployments say.';
        END IF;
    ELSIF (decision ->> 'deployed')::boolean THEN
        RAISE EXCEPTION 'invalid retrain decision' USING ERRCODE = '22023';
    END IF;
    UPDATE pgmodels.drift_report x SET retrain = decision WHERE x.id = r.id;
END
$$;

-- Whether a report's content has the shape the views read: one object per feature of the
-- model (or the predictions), with a kind, a status, a row count and numbers or NULLs as
-- metrics, and a status and drifted list that agree with them.
CREATE OR REPLACE FUNCTION pgmodels._valid_drift_report(features jsonb, names text[], status text, drifted text[],
                                                        rows bigint)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
    f jsonb;
    k text;
    worst text := 'ok';
    flagged text[] := '{}';
BEGIN
    IF jsonb_typeof(features) IS DISTINCT FROM 'array' OR jsonb_array_length(features) > cardinality(names) + 1
       OR rows IS NULL OR rows < 0 OR status IS NULL THEN
        RETURN false;
    END IF;
    FOR f IN SELECT e FROM jsonb_array_elements(features) e LOOP
        IF jsonb_typeof(f) <> 'object' OR jsonb_typeof(f -> 'feature') IS DISTINCT FROM 'string'
           OR NOT (f ->> 'feature' = ANY (names) OR f ->> 'feature' = '(prediction)')
           OR coalesce(f ->> 'kind', '') NOT IN ('numeric', 'categorical', 'prediction')
           OR coalesce(f ->> 'status', '') NOT IN ('ok', 'warning', 'drift')
           OR jsonb_typeof(f -> 'rows') IS DISTINCT FROM 'number' OR (f -> 'rows')::text !~ '^[0-9]{1,18}$'
           OR length(f::text) > 100000 THEN
            RETURN false;
        END IF;
        FOREACH k IN ARRAY ARRAY['psi', 'ks_statistic', 'p_value', 'null_rate_change'] LOOP
            IF jsonb_typeof(f -> k) NOT IN ('number', 'null')
               OR (jsonb_typeof(f -> k) = 'number' AND abs((f ->> k)::numeric) > 1e300) THEN
                RETURN false;
            END IF;
        END LOOP;
        IF f ? 'shares' AND jsonb_typeof(f -> 'shares') NOT IN ('array', 'object', 'null') THEN
            RETURN false;
        END IF;
        IF f ->> 'status' = 'drift' THEN
            worst := 'drift';
            flagged := flagged || (f ->> 'feature');
        ELSIF f ->> 'status' = 'warning' AND worst = 'ok' THEN
            worst := 'warning';
        END IF;
    END LOOP;
    RETURN status = worst AND coalesce(drifted, '{}') = flagged;
END
$$;
COMMENT ON FUNCTION pgmodels._valid_drift_report(jsonb, text[], text, text[], bigint) IS 'internal: whether a drift report''s content has the shape its views read, and its status and drifted features agree with its metrics';
COMMENT ON FUNCTION pgmodels._drift_report_decide(text, bigint, jsonb) IS 'internal: records a retrain decision on a report, once, checked against the catalog, for the verified owner of the retraining monitor and its project';

-- A model's reference profile, from set_reference(): its project owner's.
CREATE OR REPLACE FUNCTION pgmodels._store_reference(credential text, model_id bigint, profile jsonb)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    proj pgmodels.projects;
BEGIN
    SELECT p.* INTO proj FROM pgmodels.models m JOIN pgmodels.projects p ON p.id = m.project_id WHERE m.id = model_id;
    IF proj.id IS NULL THEN
        RAISE EXCEPTION 'model % does not exist', model_id USING ERRCODE = '42704';
    END IF;
    PERFORM pgmodels._require_owner(caller, proj);
    IF jsonb_typeof(profile -> 'features') IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'invalid reference profile' USING ERRCODE = '22023';
    END IF;
    UPDATE pgmodels.models m SET training = m.training || jsonb_build_object('profile', profile) WHERE m.id = $2;
    RETURN true;
END
$$;
COMMENT ON FUNCTION pgmodels._store_reference(text, bigint, jsonb) IS 'internal: stores a model''s reference profile for its project''s verified owner';

CREATE OR REPLACE FUNCTION pgmodels._drop_monitor(credential text, monitor_id bigint) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    mon pgmodels.monitor;
BEGIN
    SELECT m.* INTO mon FROM pgmodels.monitor m WHERE m.id = monitor_id FOR UPDATE;
    IF mon.id IS NULL THEN
        RAISE EXCEPTION 'monitor % does not exist', monitor_id USING ERRCODE = '42704';
    ELSIF NOT pg_has_role(caller, mon.owner, 'USAGE')
          AND NOT pgmodels._may(caller, mon.project_id, 'owner') THEN
        RAISE EXCEPTION 'must be owner of monitor %', monitor_id USING ERRCODE = '42501',
            DETAIL = 'The role that created it, or the project''s owner, may drop it.';
    END IF;
    PERFORM pgmodels._cron_unschedule(mon.cron_job_id);
    DELETE FROM pgmodels.monitor m WHERE m.id = mon.id;
END
$$;
COMMENT ON FUNCTION pgmodels._drop_monitor(text, bigint) IS 'internal: the core of drop_monitor(): its owner''s or the project owner''s; the reports stay';

-- What a monitor's retrain trains when not what the deployed version was trained with:
-- its owner's (it runs as that role). Checked for shape here; the PL/Python core checks
-- the algorithm and hyperparameters first, and train() checks everything at each retrain.
-- Definer: it writes the catalog for the verified owner.
CREATE OR REPLACE FUNCTION pgmodels._monitor_retrain_with(credential text, monitor_id bigint, settings jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    mon pgmodels.monitor;
BEGIN
    SELECT m.* INTO mon FROM pgmodels.monitor m WHERE m.id = monitor_id FOR UPDATE;
    IF mon.id IS NULL THEN
        RAISE EXCEPTION 'monitor % does not exist', monitor_id USING ERRCODE = '42704',
            HINT = 'See pgmodels.monitors for the monitors there are.';
    ELSIF NOT pg_has_role(caller, mon.owner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of monitor %', monitor_id USING ERRCODE = '42501',
            DETAIL = format('Its retrain runs as role "%s", which alone says what it trains.', mon.owner);
    END IF;
    IF settings IS NOT NULL AND (jsonb_typeof(settings) <> 'object' OR length(settings::text) > 20000
       OR EXISTS (SELECT 1 FROM jsonb_each(settings) e
                   WHERE CASE e.key WHEN 'algorithm' THEN jsonb_typeof(e.value) <> 'string' OR length(e.value #>> '{}') > 100
                                    WHEN 'hyperparams' THEN jsonb_typeof(e.value) <> 'object'
                                    WHEN 'preprocess' THEN jsonb_typeof(e.value) <> 'object'
                                    ELSE true END)) THEN
        RAISE EXCEPTION 'invalid retrain settings' USING ERRCODE = '22023',
            DETAIL = 'They are an object with an algorithm (text), hyperparams and preprocess (objects), each optional.';
    END IF;
    UPDATE pgmodels.monitor m SET retrain_with = nullif(settings, '{}'::jsonb) WHERE m.id = mon.id;
    RETURN nullif(settings, '{}'::jsonb);
END
$$;
COMMENT ON FUNCTION pgmodels._monitor_retrain_with(text, bigint, jsonb) IS 'internal: the core of set_monitor_retrain(): stores what a monitor''s retrain trains, for the monitor''s verified owner (definer: it writes the catalog)';

CREATE OR REPLACE FUNCTION pgmodels._set_monitor_retrain(monitor_id bigint, algorithm text, hyperparams jsonb,
                                                         preprocess jsonb)
RETURNS jsonb LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.monitor.schedule import set_retrain; return set_retrain(monitor_id, algorithm, hyperparams, preprocess)
$$;
COMMENT ON FUNCTION pgmodels._set_monitor_retrain(bigint, text, jsonb, jsonb) IS 'internal: the core of set_monitor_retrain()';

CREATE OR REPLACE FUNCTION @extschema@.set_monitor_retrain(monitor_id bigint, algorithm text DEFAULT NULL,
                                                           hyperparams jsonb DEFAULT NULL, preprocess jsonb DEFAULT NULL)
RETURNS jsonb LANGUAGE sql VOLATILE
AS $$
    SELECT CASE WHEN pgmodels._raise_pending(NULL::boolean) IS NULL THEN r END
      FROM (SELECT pgmodels._set_monitor_retrain($1, $2, $3, $4) AS r) s
$$;
COMMENT ON FUNCTION @extschema@.set_monitor_retrain(bigint, text, jsonb, jsonb) IS 'names what a monitor''s retrain trains instead of what the deployed version was trained with: an algorithm (with its hyperparams, else its defaults), hyperparams, preprocess; all NULL: the deployed version''s again; returns the settings; the monitor owner''s';

-- A model version's lineage, for a role that may use its project.
CREATE OR REPLACE FUNCTION pgmodels._model_lineage(model_id bigint, credential text) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    m pgmodels.models;
    proj pgmodels.projects;
BEGIN
    SELECT x.* INTO m FROM pgmodels.models x WHERE x.id = model_id;
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.id = m.project_id;
    IF m.id IS NULL OR NOT pgmodels._may(caller, proj.id, 'use') THEN
        -- the same answer for a model that is not there and one the caller may not see
        RAISE EXCEPTION 'model % does not exist', model_id USING ERRCODE = '42704',
            HINT = 'pgmodels.overview lists the models of the projects you may use.';
    END IF;
    RETURN jsonb_build_object(
        'project', proj.name, 'version', m.version, 'model_id', m.id, 'task', m.task, 'algorithm', m.algorithm,
        'runtime', m.runtime,
        -- the profile's details (quantiles, min and max, category values) describe the
        -- training rows: for the owner, export holders (the artifact tells as much) and
        -- monitor holders (drift statistics tell as much); others see which features it covers
        'training', CASE WHEN pgmodels._may(caller, proj.id, 'owner') OR pgmodels._may(caller, proj.id, 'export')
                              OR pgmodels._may(caller, proj.id, 'monitor')
                         THEN m.training
                         ELSE (m.training - 'profile') || jsonb_build_object('profile', jsonb_build_object('features',
                              (SELECT coalesce(jsonb_object_agg(f.key, jsonb_build_object('kind', f.value -> 'kind')), '{}')
                                 FROM jsonb_each(coalesce(m.training -> 'profile' -> 'features', '{}')) f)))
                    END,
        'library_versions', m.library_versions, 'trained_by', m.trained_by, 'trained_at', m.trained_at,
        'artifact_sha256', encode(m.artifact_sha256, 'hex'), 'key_metric', pgmodels._key_metric(m.task, m.metrics),
        'metrics', m.metrics, 'hyperparams', m.hyperparams, 'search_results', m.search_results, 'labels', m.labels,
        'feature_names', m.feature_names, 'artifact_bytes', length(m.artifact),
        'deployed', (SELECT d.model_id = m.id FROM pgmodels.deployments d WHERE d.project_id = m.project_id
                      ORDER BY d.id DESC LIMIT 1),
        'decision', (SELECT r.retrain ->> 'reason' FROM pgmodels.drift_report r
                      WHERE r.project_id = m.project_id AND r.retrain ->> 'new_model_id' = m.id::text
                      ORDER BY r.id DESC LIMIT 1));
END
$$;
COMMENT ON FUNCTION pgmodels._model_lineage(bigint, text) IS 'internal: a model version''s catalog record (lineage, metrics, hyperparameters, search results, evaluation; not the artifact) for model_lineage() and the console, for a role that may use its project';

-- PL/Python cores, run as the caller.
CREATE OR REPLACE FUNCTION pgmodels._drift(project_name text, relation_name text, model_id bigint, since timestamptz,
                                           time_column text)
RETURNS TABLE (feature text, kind text, rows bigint, psi double precision, ks_statistic double precision,
               p_value double precision, null_rate_change double precision, status text)
LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return []
from pgmodels.monitor.report import drift_udf; return drift_udf(project_name, relation_name, model_id, since, time_column)
$$;
COMMENT ON FUNCTION pgmodels._drift(text, text, bigint, timestamptz, text) IS 'internal: the core of drift()';

CREATE OR REPLACE FUNCTION @extschema@.drift(project_name text, relation_name text, model_id bigint DEFAULT NULL,
                                             since timestamptz DEFAULT NULL, time_column text DEFAULT NULL)
RETURNS TABLE (feature text, kind text, rows bigint, psi double precision, ks_statistic double precision,
               p_value double precision, null_rate_change double precision, status text)
LANGUAGE sql VOLATILE
AS $$
    SELECT * FROM pgmodels._drift($1, $2, $3, $4, $5)
    UNION ALL
    SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE pgmodels._raise_pending(NULL::boolean)
$$;
COMMENT ON FUNCTION @extschema@.drift(text, text, bigint, timestamptz, text) IS 'compares a relation (or the rows since a time) with the deployed or given model''s training profile: per feature PSI, Kolmogorov-Smirnov statistic and p-value, null-rate change and a status (ok, warning, drift), plus one row for the predictions; for the project''s owner and roles granted predict and monitor';

CREATE OR REPLACE FUNCTION pgmodels._set_reference(project_name text, relation_name text, model_id bigint,
                                                   y_column_name text)
RETURNS bigint LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.monitor.report import set_reference; return set_reference(project_name, relation_name, model_id, y_column_name)
$$;
COMMENT ON FUNCTION pgmodels._set_reference(text, text, bigint, text) IS 'internal: the core of set_reference()';

CREATE OR REPLACE FUNCTION @extschema@.set_reference(project_name text, relation_name text, model_id bigint DEFAULT NULL,
                                                     y_column_name text DEFAULT NULL)
RETURNS bigint LANGUAGE sql VOLATILE
AS $$ SELECT coalesce(pgmodels._set_reference($1, $2, $3, $4), pgmodels._raise_pending(NULL::bigint)) $$;
COMMENT ON FUNCTION @extschema@.set_reference(text, text, bigint, text) IS 'stores the reference profile drift() compares with for the deployed or given model (an imported one, say) from a relation''s rows; the target''s distribution from y_column_name, or else from the model''s own predictions; returns the rows read; the project owner''s';

CREATE OR REPLACE FUNCTION @extschema@.set_monitor_thresholds(project_name text,
    psi_warning double precision DEFAULT NULL, psi_drift double precision DEFAULT NULL,
    ks_alpha double precision DEFAULT NULL, ks_min_statistic double precision DEFAULT NULL,
    retrain_margin double precision DEFAULT NULL, min_holdout_rows integer DEFAULT NULL,
    retrain_on text DEFAULT NULL)
RETURNS jsonb LANGUAGE sql VOLATILE
AS $$ SELECT pgmodels._set_monitor_thresholds(pgmodels._credential(), $1, $2, $3, $4, $5, $6, $7, $8) $$;
COMMENT ON FUNCTION @extschema@.set_monitor_thresholds(text, double precision, double precision, double precision, double precision, double precision, integer, text) IS 'sets a project''s drift thresholds (PSI warning 0.1 and drift 0.2, KS alpha 0.01 with a statistic of at least 0.1), its retrain margin and minimum holdout rows, and when a retraining monitor retrains (drift, warning or always: at every report); NULL keeps a value; the project owner''s';

CREATE OR REPLACE FUNCTION pgmodels._monitor(project_name text, relation_name text, schedule text, time_column text,
                                             retrain boolean)
RETURNS bigint LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.monitor.schedule import create; return create(project_name, relation_name, schedule, time_column, retrain)
$$;
COMMENT ON FUNCTION pgmodels._monitor(text, text, text, text, boolean) IS 'internal: the core of monitor()';

CREATE OR REPLACE FUNCTION @extschema@.monitor(project_name text, relation_name text, schedule text,
                                               time_column text DEFAULT NULL, retrain boolean DEFAULT false)
RETURNS bigint LANGUAGE sql VOLATILE
AS $$ SELECT coalesce(pgmodels._monitor($1, $2, $3, $4, $5), pgmodels._raise_pending(NULL::bigint)) $$;
COMMENT ON FUNCTION @extschema@.monitor(text, text, text, text, boolean) IS 'monitors a relation for drift against a project''s deployed model on a pg_cron schedule (NULL: by hand with run_monitor()), writing pgmodels.drift_reports and notifying channel pgmodels_drift; with retrain, retrains on drift and deploys only a better model; returns the monitor id';

CREATE OR REPLACE FUNCTION pgmodels._run_monitor(monitor_id bigint)
RETURNS bigint LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.monitor.schedule import run; return run(monitor_id)
$$;
COMMENT ON FUNCTION pgmodels._run_monitor(bigint) IS 'internal: the core of run_monitor()';

CREATE OR REPLACE FUNCTION @extschema@.run_monitor(monitor_id bigint)
RETURNS bigint LANGUAGE sql VOLATILE
AS $$
    SELECT CASE WHEN pgmodels._raise_pending(NULL::boolean) IS NULL THEN r END
      FROM (SELECT pgmodels._run_monitor($1) AS r) s
$$;
COMMENT ON FUNCTION @extschema@.run_monitor(bigint) IS 'writes one drift report of a monitor now, as its owner (pg_cron calls it on the monitor''s schedule); returns the report id, or NULL when the window has no rows';

CREATE OR REPLACE FUNCTION @extschema@.drop_monitor(monitor_id bigint) RETURNS void LANGUAGE sql VOLATILE
AS $$ SELECT pgmodels._drop_monitor(pgmodels._credential(), $1) $$;
COMMENT ON FUNCTION @extschema@.drop_monitor(bigint) IS 'drops a monitor and its pg_cron entry (its reports stay); the monitor owner''s or the project owner''s';

CREATE OR REPLACE FUNCTION pgmodels._model_lineage_rows(model_id bigint)
RETURNS TABLE (item text, value text, detail text) LANGUAGE plpython3u STABLE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return []
from pgmodels.monitor.lineage import lineage_udf; return lineage_udf(model_id)
$$;
COMMENT ON FUNCTION pgmodels._model_lineage_rows(bigint) IS 'internal: the core of model_lineage()';

CREATE OR REPLACE FUNCTION @extschema@.model_lineage(model_id bigint)
RETURNS TABLE (item text, value text, detail text) LANGUAGE sql STABLE
AS $$
    SELECT * FROM pgmodels._model_lineage_rows($1)
    UNION ALL
    SELECT NULL, NULL, NULL WHERE pgmodels._raise_pending(NULL::boolean)
$$;
COMMENT ON FUNCTION @extschema@.model_lineage(bigint) IS 'where a model version came from: training relation, row count and fingerprint, split, snapshot, who trained it when, library and pgmodels versions, for a retrain the model and drift report it answered; for roles that may use its project';

-- Grants. Internal functions: none for PUBLIC but the cores, which check the caller
-- themselves (a credential, the project's privileges, the monitor's owner).
GRANT EXECUTE ON FUNCTION
    -- each checks the caller's credential and privilege itself
    pgmodels._drift_reference(text, bigint, text), pgmodels._set_monitor_thresholds(text, text, double precision, double precision, double precision, double precision, double precision, integer, text),
    pgmodels._monitor_create(text, text, oid, text, text, boolean), pgmodels._monitor_get(text, bigint),
    pgmodels._drift_report_write(text, bigint, bigint, timestamptz, timestamptz, bigint, text, text[], jsonb, jsonb),
    pgmodels._drift_report_decide(text, bigint, jsonb), pgmodels._store_reference(text, bigint, jsonb),
    pgmodels._drop_monitor(text, bigint), pgmodels._model_lineage(bigint, text),
    pgmodels._stage_profile(bigint, text), pgmodels._monitor_retrain_with(text, bigint, jsonb),
    -- the PL/Python cores run as the caller and reach the catalog only through the above
    pgmodels._drift(text, text, bigint, timestamptz, text), pgmodels._set_reference(text, text, bigint, text),
    pgmodels._monitor(text, text, text, text, boolean), pgmodels._run_monitor(bigint),
    pgmodels._model_lineage_rows(bigint), pgmodels._set_monitor_retrain(bigint, text, jsonb, jsonb)
TO PUBLIC;
-- Scheduling is for the roles an administrator grants it to, as create_batch_job is.
REVOKE EXECUTE ON FUNCTION @extschema@.monitor(text, text, text, text, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION pgmodels._valid_drift_report(jsonb, text[], text, text[], bigint) FROM PUBLIC;

-- sql/110_edge.sql
-- Edge deployment: the served model as a signed bundle for devices and browsers.
--
-- export_bundle() returns a zip archive of manifest.json, model.onnx and manifest.sig:
-- the artifact the model serves from (with ZipMap outputs turned into plain tensors, the
-- only change ever made), a manifest describing it (features, inputs, outputs, labels,
-- metrics, opset, the sha256 of model.onnx) and the Ed25519 signature of the manifest's
-- bytes by the server's signing key. Devices pin the public key (edge_public_key()).
--
-- The signing key lives in pgmodels.edge_signing_key, one row, made on first use from the
-- operating system's randomness. No role but the extension's owner (a superuser) may
-- read it: PUBLIC has no privilege on the table, and the only functions that touch it are
-- definer functions that sign nothing but a manifest they built from the catalog after
-- checking the caller's export privilege. pg_dump keeps it (pg_extension_config_dump),
-- so a restored database signs with the same key and pinned devices keep working; a
-- dump is therefore as secret as the key. Rotating it: a superuser deletes the row, and
-- the next export makes a new key (devices must then pin the new public key).

CREATE OR REPLACE FUNCTION pgmodels._edge_new_key() RETURNS TABLE (seed bytea, public_key bytea)
LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return []
from pgmodels.edge.build import new_key; return new_key()
$$;
COMMENT ON FUNCTION pgmodels._edge_new_key() IS 'internal: a fresh Ed25519 key (seed and public key) from os.urandom; only _edge_key calls it';

-- Definer: the key table is the owner's alone. Makes the key on first use (concurrent
-- first calls agree on one row: ON CONFLICT keeps the first).
CREATE OR REPLACE FUNCTION pgmodels._edge_key() RETURNS pgmodels.edge_signing_key
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k pgmodels.edge_signing_key;
BEGIN
    SELECT * INTO k FROM pgmodels.edge_signing_key WHERE id = 1;
    IF k.id IS NULL THEN
        INSERT INTO pgmodels.edge_signing_key (id, seed, public_key)
        SELECT 1, n.seed, n.public_key FROM pgmodels._edge_new_key() n
        ON CONFLICT (id) DO NOTHING;
        PERFORM pgmodels._raise_pending(NULL::integer);
        SELECT * INTO k FROM pgmodels.edge_signing_key WHERE id = 1;
    END IF;
    RETURN k;
END
$$;
COMMENT ON FUNCTION pgmodels._edge_key() IS 'internal: the signing key, made on first use; not for PUBLIC';

-- Definer: reads the key's public half only.
CREATE OR REPLACE FUNCTION @extschema@.edge_public_key() RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RETURN encode((pgmodels._edge_key()).public_key, 'hex'); END $$;
COMMENT ON FUNCTION @extschema@.edge_public_key() IS 'the public half of the Ed25519 key that signs edge bundles, as 64 hex digits, for devices to pin (makes the key on first use)';

CREATE OR REPLACE FUNCTION pgmodels._edge_build(served pgmodels.served_model, metrics jsonb, trained_at text,
                                                seed bytea, option text, check_rows jsonb, deployment bigint)
RETURNS bytea
LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.edge.build import edge_build; return edge_build(served, metrics, trained_at, seed, option, check_rows, deployment)
$$;
COMMENT ON FUNCTION pgmodels._edge_build(pgmodels.served_model, jsonb, text, bytea, text, jsonb, bigint) IS 'internal: builds and signs the bundle of a resolved model (with the deployment that made it current, for the deployed one), with a size option checked on the check rows; only _export_bundle calls it';

CREATE OR REPLACE FUNCTION pgmodels._edge_options_report(served pgmodels.served_model, check_rows jsonb) RETURNS text
LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.edge.build import edge_options; return edge_options(served, check_rows)
$$;
COMMENT ON FUNCTION pgmodels._edge_options_report(pgmodels.served_model, jsonb) IS 'internal: each size option''s size and prediction difference on the check rows; only _edge_options calls it';

-- Definer: it reads the catalog and the signing key; the caller's credential says who
-- is asking, and the export privilege decides (as for export_onnx). check_rows are the
-- caller's (read by the invoker wrapper with the caller's own rights): they only decide
-- whether a size option is refused.
CREATE OR REPLACE FUNCTION pgmodels._export_bundle(project_name text, model_id bigint, option text, check_rows jsonb,
                                                   credential text)
RETURNS bytea
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    artifact bytea;
    served pgmodels.served_model;
    m pgmodels.models;
    bundle bytea;
    deployment bigint;
    chosen bigint := model_id;
BEGIN
    IF project_name IS NULL THEN
        RETURN NULL;
    END IF;
    -- The deployed model: the newest deployment, read once, so that the bundle and the
    -- deployment number it carries agree. Devices refuse a bundle whose number is lower
    -- than the one they run (an older bundle replayed), and a deploy or a rollback makes
    -- a new, higher one. Only the plain bundle (what serve serves) is numbered: a size
    -- option's variant, checked on rows the caller chooses, is not offered as the same
    -- deployment. Nothing is said before the checks below.
    IF model_id IS NULL THEN
        SELECT CASE WHEN option IS NULL THEN d.id END, d.model_id INTO deployment, chosen
          FROM pgmodels.deployments d JOIN pgmodels.projects p ON p.id = d.project_id
         WHERE p.name = project_name ORDER BY d.id DESC LIMIT 1;
    END IF;
    -- every check of export_onnx: privilege, master switch, project, runtime, sha256
    artifact := pgmodels._export(project_name, chosen, credential);
    served := pgmodels._resolve(project_name, coalesce(chosen, 0), pgmodels._verify_caller(credential), 'export');
    SELECT * INTO m FROM pgmodels.models WHERE id = served.id;
    bundle := pgmodels._edge_build(served, m.metrics, to_char(m.trained_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                                   (pgmodels._edge_key()).seed, option, check_rows, deployment);
    IF bundle IS NULL THEN
        PERFORM pgmodels._raise_pending(NULL::integer);
    END IF;
    RETURN bundle;
END
$$;
COMMENT ON FUNCTION pgmodels._export_bundle(text, bigint, text, jsonb, text) IS 'internal: the core of export_bundle(): the checks of export_onnx(), then the signed bundle';

CREATE OR REPLACE FUNCTION @extschema@.export_bundle(project_name text, model_id bigint DEFAULT NULL) RETURNS bytea
LANGUAGE sql VOLATILE
AS $$ SELECT pgmodels._export_bundle($1, $2, NULL, NULL, pgmodels._credential()) $$;
COMMENT ON FUNCTION @extschema@.export_bundle(text, bigint) IS 'a signed edge bundle (zip: manifest.json, model.onnx, manifest.sig) of the deployed model or the given model id, for devices; needs the export privilege on its project';

-- The rows a size option is checked on, read as the caller (an invoker function: the
-- caller's privileges and row-level security apply), at most 100,000.
CREATE OR REPLACE FUNCTION pgmodels._check_rows(check_relation regclass) RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    rows jsonb;
BEGIN
    IF check_relation IS NULL THEN
        RAISE EXCEPTION 'a size option needs check rows' USING ERRCODE = '22004',
            HINT = 'Pass the model''s test split (or rows you trust) as check_relation.';
    END IF;
    EXECUTE format('SELECT jsonb_agg(to_jsonb(t)) FROM (SELECT * FROM %s LIMIT 100000) t', check_relation) INTO rows;
    RETURN coalesce(rows, '[]'::jsonb);
END
$$;
COMMENT ON FUNCTION pgmodels._check_rows(regclass) IS 'internal: a relation''s rows as jsonb, read with the caller''s rights, for checking a size option';

CREATE OR REPLACE FUNCTION @extschema@.export_bundle(project_name text, model_id bigint, size_option text,
                                                     check_relation regclass) RETURNS bytea
LANGUAGE sql VOLATILE
AS $$ SELECT pgmodels._export_bundle($1, $2, $3, CASE WHEN $3 IS NOT NULL THEN pgmodels._check_rows($4) END,
                                      pgmodels._credential()) $$;
COMMENT ON FUNCTION @extschema@.export_bundle(text, bigint, text, regclass) IS 'a signed edge bundle made smaller by a size option (ort, float16 or int8), refused when it changes any class on the check relation''s rows (a NULL option: the plain bundle); needs the export privilege';

-- Definer: reads the catalog; the export privilege decides.
CREATE OR REPLACE FUNCTION pgmodels._edge_options(project_name text, model_id bigint, check_rows jsonb, credential text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    served pgmodels.served_model;
    report text;
BEGIN
    PERFORM pgmodels._export(project_name, model_id, credential);
    served := pgmodels._resolve(project_name, coalesce(model_id, 0), pgmodels._verify_caller(credential), 'export');
    report := pgmodels._edge_options_report(served, check_rows);
    IF report IS NULL THEN
        PERFORM pgmodels._raise_pending(NULL::integer);
    END IF;
    RETURN report::jsonb;
END
$$;
COMMENT ON FUNCTION pgmodels._edge_options(text, bigint, jsonb, text) IS 'internal: the core of edge_bundle_options()';

CREATE OR REPLACE FUNCTION @extschema@.edge_bundle_options(project_name text, check_relation regclass,
                                                           model_id bigint DEFAULT NULL)
RETURNS TABLE (size_option text, bytes integer, bytes_before integer, max_abs_diff double precision,
               classes_changed integer, check_rows integer, usable boolean, note text)
LANGUAGE sql VOLATILE
AS $$
    SELECT r->>'option', (r->>'bytes')::integer, (r->>'bytes_before')::integer, (r->>'max_abs_diff')::float8,
           (r->>'classes_changed')::integer, (r->>'rows')::integer, (r->>'usable')::boolean, r->>'note'
    FROM jsonb_array_elements(pgmodels._edge_options($1, $3, pgmodels._check_rows($2), pgmodels._credential())) r
$$;
COMMENT ON FUNCTION @extschema@.edge_bundle_options(text, regclass, bigint) IS 'what each size option (ort, float16, int8) would make of a model''s bundle: bytes before and after, the largest prediction difference and the classes changed on the check relation''s rows; needs the export privilege';

-- What a device polling for updates needs to know, cheaply: the deployed model, its
-- artifact's sha256 and the signing key's id (a rotated key changes it), for a role with
-- the export privilege. Definer: reads the catalog and the key's public half.
CREATE OR REPLACE FUNCTION pgmodels._edge_current(project_name text, credential text)
RETURNS TABLE (model_id bigint, version integer, artifact_sha256 text, key_id text, deployment bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    served pgmodels.served_model;
BEGIN
    IF NOT has_function_privilege(caller, 'pgmodels._lookup(text, bigint, text)', 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for function _lookup' USING ERRCODE = '42501',
            DETAIL = 'The administrator has turned predicting and exporting off for this role.';
    END IF;
    served := pgmodels._resolve(project_name, 0, caller, 'export', false);
    RETURN QUERY SELECT served.id, served.version, encode(served.artifact_sha256, 'hex'),
        (SELECT left(encode(sha256(k.public_key), 'hex'), 16) FROM pgmodels.edge_signing_key k WHERE k.id = 1),
        (SELECT max(d.id) FROM pgmodels.deployments d JOIN pgmodels.projects p ON p.id = d.project_id
          WHERE p.name = project_name);
END
$$;
COMMENT ON FUNCTION pgmodels._edge_current(text, text) IS 'internal: the deployed model id, version, served artifact sha256, signing key id and deployment number of a project, for a role with the export privilege (pgmodels serve''s bundle cache key)';

-- Edge devices under a canary rollout (sql/127_rollouts.sql): a device that names itself
-- (pgmodels serve's bundle route, ?device_id=) is handed the candidate's bundle when its
-- share of the rollout, pgmodels._rollout_share(rollout id, device id) (the hash every
-- mode routes keys by), is below the fraction, and the deployed model's otherwise, in
-- shadow, or when the deployed model is no longer the rollout's champion. Both carry the
-- number of the deployment the rollout runs on: a canary device takes the candidate's
-- bundle and, after an abort, the champion's again (the same number, which devices
-- accept); a promote is a new deployment and reaches every device. The owner reads the
-- catalog: only the definer cores below call it.
CREATE OR REPLACE FUNCTION pgmodels._edge_assigned(project_name text, device text, OUT model_id bigint,
                                                   OUT deployment bigint, OUT rollout_id bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    candidate bigint;
BEGIN
    SELECT d.model_id, d.id INTO model_id, deployment
      FROM pgmodels.deployments d JOIN pgmodels.projects p ON p.id = d.project_id
     WHERE p.name = project_name ORDER BY d.id DESC LIMIT 1;
    IF device IS NULL OR model_id IS NULL THEN
        RETURN;
    END IF;
    SELECT r.id, r.candidate_id INTO rollout_id, candidate
      FROM pgmodels.rollout_runs r JOIN pgmodels.projects p ON p.id = r.project_id
     WHERE p.name = project_name AND r.status = 'active' AND r.mode = 'canary'
       AND r.champion_id = _edge_assigned.model_id
       AND pgmodels._rollout_share(r.id, device) < r.fraction;
    IF rollout_id IS NOT NULL THEN
        model_id := candidate;
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._edge_assigned(text, text) IS 'internal: the model a device gets (the canary candidate for the devices whose share of the project''s active canary rollout is below its fraction, else the deployed one), the deployment number its bundle carries, and the rollout that chose the candidate (NULL otherwise)';

-- _edge_current for a device: what its bundle would be, for a role with the export
-- privilege. Definer: reads the catalog.
CREATE OR REPLACE FUNCTION pgmodels._edge_current(project_name text, credential text, device text)
RETURNS TABLE (model_id bigint, version integer, artifact_sha256 text, key_id text, deployment bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
    caller oid;
    served pgmodels.served_model;
BEGIN
    SELECT * INTO a FROM pgmodels._edge_assigned(project_name, device);
    IF a.rollout_id IS NULL THEN
        RETURN QUERY SELECT * FROM pgmodels._edge_current(project_name, credential);
        RETURN;
    END IF;
    caller := pgmodels._verify_caller(credential);
    IF NOT has_function_privilege(caller, 'pgmodels._lookup(text, bigint, text)', 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for function _lookup' USING ERRCODE = '42501',
            DETAIL = 'The administrator has turned predicting and exporting off for this role.';
    END IF;
    served := pgmodels._resolve(project_name, a.model_id, caller, 'export', false);
    RETURN QUERY SELECT served.id, served.version, encode(served.artifact_sha256, 'hex'),
        (SELECT left(encode(sha256(k.public_key), 'hex'), 16) FROM pgmodels.edge_signing_key k WHERE k.id = 1),
        a.deployment;
END
$$;
COMMENT ON FUNCTION pgmodels._edge_current(text, text, text) IS 'internal: _edge_current for a device id: the canary candidate''s model id, version, sha256, key id and the deployment number while the device is in the project''s canary share, else the deployed model''s (pgmodels serve''s bundle cache key)';

-- The bundle for a device: the canary candidate's, signed and numbered with the
-- deployment the rollout runs on, for a device in the canary share; the deployed model's
-- (export_bundle's) otherwise. Definer: as _export_bundle, whose checks it makes.
CREATE OR REPLACE FUNCTION pgmodels._export_device_bundle(project_name text, device text, credential text)
RETURNS bytea
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
    artifact bytea;
    served pgmodels.served_model;
    m pgmodels.models;
    bundle bytea;
BEGIN
    IF project_name IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT * INTO a FROM pgmodels._edge_assigned(project_name, device);
    IF a.rollout_id IS NULL THEN
        RETURN pgmodels._export_bundle(project_name, NULL, NULL, NULL, credential);
    END IF;
    -- every check of export_onnx: privilege, master switch, project, runtime, sha256
    artifact := pgmodels._export(project_name, a.model_id, credential);
    served := pgmodels._resolve(project_name, a.model_id, pgmodels._verify_caller(credential), 'export');
    SELECT * INTO m FROM pgmodels.models WHERE id = served.id;
    bundle := pgmodels._edge_build(served, m.metrics, to_char(m.trained_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                                   (pgmodels._edge_key()).seed, NULL, NULL, a.deployment);
    IF bundle IS NULL THEN
        PERFORM pgmodels._raise_pending(NULL::integer);
    END IF;
    RETURN bundle;
END
$$;
COMMENT ON FUNCTION pgmodels._export_device_bundle(text, text, text) IS 'internal: the signed bundle pgmodels serve hands a device: the canary candidate''s (numbered with the deployment the rollout runs on) for a device in the project''s canary share, else the deployed model''s; the checks of export_bundle()';

-- Grants. PUBLIC keeps: the user-facing functions above (export_bundle and
-- edge_bundle_options check the export privilege themselves; edge_public_key gives out
-- the public half only), _check_rows (an invoker function: the caller's own rights), and
-- the definer cores, which check the caller's credential and privilege themselves. Never
-- PUBLIC: _edge_key (the private key), _edge_new_key, _edge_build (it signs what it is
-- given) and _edge_options_report: only definer functions call them.
REVOKE EXECUTE ON FUNCTION
    pgmodels._edge_new_key(),
    pgmodels._edge_key(),
    pgmodels._edge_build(pgmodels.served_model, jsonb, text, bytea, text, jsonb, bigint),
    pgmodels._edge_options_report(pgmodels.served_model, jsonb),
    pgmodels._export_bundle(text, bigint, text, jsonb, text),
    pgmodels._edge_options(text, bigint, jsonb, text),
    pgmodels._check_rows(regclass),
    pgmodels._edge_current(text, text),
    pgmodels._edge_assigned(text, text),
    pgmodels._edge_current(text, text, text),
    pgmodels._export_device_bundle(text, text, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    -- check the caller's credential and export privilege themselves
    pgmodels._export_bundle(text, bigint, text, jsonb, text),
    pgmodels._edge_options(text, bigint, jsonb, text),
    pgmodels._edge_current(text, text),
    pgmodels._edge_current(text, text, text),
    pgmodels._export_device_bundle(text, text, text),
    -- reads a relation with the caller's own rights
    pgmodels._check_rows(regclass)
TO PUBLIC;

-- sql/120_families.sql
-- The model families PostgresML has beyond one-target supervised learning, and
-- materialized snapshots (issue #14).
--
-- Joint regression: train_joint(project, task, relation, y_column_name text[], ...) fits
-- several numeric targets at once; predict_joint() gives one value per target. Clustering
-- and decomposition are tasks of train() (no y_column_name); predict() gives a clustering
-- model's cluster, decompose() a PCA model's components. predict() on a joint or PCA model
-- gives the first value, as PostgresML's does. All three are served only through ONNX,
-- each graph checked against the native model at training (see
-- python_udfs/pgmodels/training/families.py and family_onnx.py).
--
-- Snapshots: train(..., materialize_snapshot => true) copies the relation's rows into a
-- table in schema pgmodels_snapshots, trains on it, and records it as the project's
-- relation, so a retrain or an audit reads the same rows (see training/snapshots.py).

-- The type of a snapshot's column: domains replaced by their base types (an array of a
-- domain by an array of its base type), and a type someone created (an enum, a composite,
-- a range) by text, so that no type's owner can DROP ... CASCADE a column of a snapshot.
-- Built in: made by initdb (an oid below 16384, FirstNormalObjectId) in pg_catalog. The
-- caller converts each column to this type while it copies (training/snapshots.py).
CREATE OR REPLACE FUNCTION pgmodels._snapshot_type(typ oid, typmod integer) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t oid := typ;
    m integer := typmod;
    is_array boolean := false;
    r record;
BEGIN
    LOOP
        SELECT y.typtype, y.typbasetype, y.typtypmod, y.typelem, y.typcategory, y.typnamespace INTO r
          FROM pg_catalog.pg_type y WHERE y.oid = t;
        IF r.typtype = 'd' THEN
            t := r.typbasetype;
            m := CASE WHEN r.typtypmod <> -1 THEN r.typtypmod ELSE m END;
        ELSIF r.typcategory = 'A' AND r.typelem <> 0 AND NOT is_array THEN
            is_array := true;
            t := r.typelem;
        ELSE
            EXIT;
        END IF;
    END LOOP;
    RETURN CASE WHEN t >= 16384 OR r.typnamespace <> 'pg_catalog'::pg_catalog.regnamespace THEN 'text'
                ELSE pg_catalog.format_type(t, m) END
           || CASE WHEN is_array THEN '[]' ELSE '' END;
END
$$;
COMMENT ON FUNCTION pgmodels._snapshot_type(oid, integer) IS 'internal: the built-in type a snapshot column of a given type gets (domains by their base type, user-made types as text)';

-- Definer: only the extension's owner creates in pgmodels_snapshots. The caller has
-- copied the relation's rows, with its own rights (row security, column grants), into a
-- plain temporary table of its own, converting each column to the built-in type the
-- snapshot gives it (pgmodels._snapshot_type: domains by their base types, types someone
-- made as text), so that any cast, domain check or function of the caller's runs as the
-- caller. This makes the snapshot table with exactly the copy's column types, fills it
-- from the copy (ONLY the copy, with no conversion) and gives the caller SELECT, in one
-- step: no caller ever holds INSERT on a snapshot. PostgreSQL runs a cast, a domain's
-- check, a policy or a rule with the rights of whoever evaluates it, here the extension's
-- owner: so it refuses a copy with a column of a type that is not built in (42804), or
-- with row-level security, rules or triggers (42501), before it makes anything. It
-- refuses when the schema is not the extension's.
CREATE OR REPLACE FUNCTION pgmodels._snapshot_create(relation oid, copy oid, credential text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    owner oid := (SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname = 'pgmodels');
    source text;
    snapshot text;
    bad record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = relation AND c.relkind IN ('r', 'p', 'v', 'm', 'f')) THEN
        RAISE EXCEPTION 'relation with oid % does not exist', relation USING ERRCODE = '42P01';
    END IF;
    source := relation::regclass::text;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_extension e ON p.pronamespace = e.extnamespace
                    WHERE e.extname = 'pgmodels' AND p.proname = 'train' AND pg_catalog.has_function_privilege(caller, p.oid, 'EXECUTE')) THEN
        RAISE EXCEPTION 'permission denied for function train' USING ERRCODE = '42501',
            DETAIL = 'Materializing a snapshot is part of training.';
    ELSIF NOT pg_catalog.has_table_privilege(caller, relation, 'SELECT') AND NOT pg_catalog.has_any_column_privilege(caller, relation, 'SELECT') THEN
        RAISE EXCEPTION 'permission denied for relation %', source USING ERRCODE = '42501';
    END IF;
    -- the copy: a plain table of the caller's own session (temporary), owned by the caller
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = copy AND c.relkind = 'r' AND c.relpersistence = 't'
                     AND c.relowner = caller AND c.relnamespace = pg_catalog.pg_my_temp_schema()) THEN
        RAISE EXCEPTION 'the rows of a snapshot must come from a temporary table of the caller''s session'
            USING ERRCODE = '42501';
    END IF;
    -- ... that runs nothing when read
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = copy
                  AND (c.relrowsecurity OR c.relforcerowsecurity OR c.relhasrules OR c.relhastriggers
                       OR EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid)
                       OR EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r WHERE r.ev_class = c.oid)
                       OR EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid))) THEN
        RAISE EXCEPTION 'the copy a snapshot is made from must be a plain table' USING ERRCODE = '42501',
            DETAIL = 'It has row-level security, a policy, a rule or a trigger, which would run with the rights of the extension''s owner when the snapshot reads it.';
    END IF;
    -- ... whose columns are all of built-in types: the snapshot reads them with no conversion
    SELECT a.attname, a.atttypid::pg_catalog.regtype AS typ INTO bad
      FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
     WHERE a.attrelid = copy AND a.attnum > 0 AND NOT a.attisdropped
       AND NOT (t.oid < 16384 AND t.typnamespace = 'pg_catalog'::pg_catalog.regnamespace AND t.typtype <> 'd')  -- 16384: FirstNormalObjectId
     ORDER BY a.attnum LIMIT 1;
    IF bad.attname IS NOT NULL THEN
        RAISE EXCEPTION 'column "%" of the copy a snapshot is made from is of type %, which is not built in', bad.attname, bad.typ
            USING ERRCODE = '42804',
                  DETAIL = 'A snapshot is filled with the rights of the extension''s owner, so it takes only values of built-in types: the caller converts the rest (domains to their base types, types a role made to text) while it copies the rows.',
                  HINT = 'Call snapshot() or train(..., materialize_snapshot => true), which convert each column as the caller.';
    END IF;
    PERFORM pgmodels._snapshot_schema_check();
    snapshot := 'pgmodels_snapshots.' || pg_catalog.quote_ident('snapshot_' || pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', ''));
    EXECUTE pg_catalog.format('CREATE TABLE %s (%s)', snapshot,
        (SELECT pg_catalog.string_agg(pg_catalog.format('%I %s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)),
                                      ', ' ORDER BY a.attnum)
           FROM pg_catalog.pg_attribute a WHERE a.attrelid = copy AND a.attnum > 0 AND NOT a.attisdropped));
    EXECUTE pg_catalog.format('INSERT INTO %s SELECT * FROM ONLY %s', snapshot, copy::regclass);
    EXECUTE pg_catalog.format('COMMENT ON TABLE %s IS %L', snapshot,
                   pg_catalog.format('pgmodels snapshot of %s for role %s, taken at %s', source, caller::regrole, pg_catalog.clock_timestamp()));
    EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA pgmodels_snapshots TO %I', caller::regrole::text);
    EXECUTE pg_catalog.format('GRANT SELECT ON %s TO %I', snapshot, caller::regrole::text);
    RETURN snapshot;
END
$$;
COMMENT ON FUNCTION pgmodels._snapshot_create(oid, oid, text) IS 'internal: a sealed snapshot table, filled from the caller''s temporary copy of a relation the caller may read and train on; the caller may only read it';

-- Before a snapshot is created or read: schema pgmodels_snapshots must be the extension's
-- own (a member, owned by the extension's owner), else 42501.
CREATE OR REPLACE FUNCTION pgmodels._snapshot_schema_check() RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_extension e ON e.extname = 'pgmodels'
                     JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
                      AND d.objid = n.oid AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
                      AND d.refobjid = e.oid AND d.deptype = 'e'
                    WHERE n.nspname = 'pgmodels_snapshots' AND n.nspowner = e.extowner) THEN
        RAISE EXCEPTION 'schema pgmodels_snapshots is not pgmodels''s own' USING ERRCODE = '42501',
            DETAIL = 'Snapshots are kept only in the schema the extension created, owned by the extension''s owner.';
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._snapshot_schema_check() IS 'internal: refuses (42501) unless schema pgmodels_snapshots is the extension''s own';

-- Before training reads a relation of schema pgmodels_snapshots: it must be a snapshot
-- pgmodels made (a plain table owned by the extension's owner, in the extension's schema).
CREATE OR REPLACE FUNCTION pgmodels._snapshot_check(snapshot oid) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pgmodels._snapshot_schema_check();
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_extension e ON e.extname = 'pgmodels'
                    WHERE c.oid = snapshot AND c.relkind = 'r' AND c.relowner = e.extowner) THEN
        RAISE EXCEPTION 'relation % is not a pgmodels snapshot', snapshot::regclass USING ERRCODE = '42501',
            DETAIL = 'A snapshot is a plain table owned by the extension''s owner.';
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._snapshot_check(oid) IS 'internal: refuses (42501) a relation of schema pgmodels_snapshots that is not a plain table owned by the extension''s owner';

CREATE OR REPLACE FUNCTION pgmodels._train_joint(project_name text, task text, relation_name text, y_column_name text[],
    algorithm text, hyperparams jsonb, search text, search_params jsonb, search_args jsonb, test_size real,
    test_sampling text, automatic_deploy boolean, preprocess jsonb, materialize_snapshot boolean)
RETURNS TABLE (project text, task text, algorithm text, deployed boolean, model_id bigint, version integer,
               runtime text, metrics jsonb)
LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return []
from pgmodels.training.family_udf import train_joint; return train_joint(project_name, task, relation_name, y_column_name, algorithm, hyperparams, search, search_params, search_args, test_size, test_sampling, automatic_deploy, preprocess, materialize_snapshot)
$$;
COMMENT ON FUNCTION pgmodels._train_joint(text, text, text, text[], text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean) IS 'internal: the core of train_joint()';

-- Like train(): the caller's rights, NULL arguments reuse the project's previous
-- training; only roles that may execute train() may (the core checks it).
CREATE OR REPLACE FUNCTION @extschema@.train_joint(
    project_name text,
    task text DEFAULT NULL,
    relation_name text DEFAULT NULL,
    y_column_name text[] DEFAULT NULL,
    algorithm text DEFAULT NULL,
    hyperparams jsonb DEFAULT NULL,
    search text DEFAULT NULL,
    search_params jsonb DEFAULT NULL,
    search_args jsonb DEFAULT NULL,
    test_size real DEFAULT NULL,
    test_sampling text DEFAULT NULL,
    automatic_deploy boolean DEFAULT true,
    preprocess jsonb DEFAULT NULL,
    materialize_snapshot boolean DEFAULT false)
RETURNS TABLE (project text, task text, algorithm text, deployed boolean, model_id bigint, version integer,
               runtime text, metrics jsonb)
LANGUAGE sql VOLATILE
AS $$
    SELECT * FROM pgmodels._train_joint($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
    UNION ALL  -- raises the error the core recorded, if any, once the core has run
    SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE pgmodels._raise_pending(NULL::boolean)
$$;
COMMENT ON FUNCTION @extschema@.train_joint(text, text, text, text[], text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean) IS 'trains a joint (multi-output) regression model version on several target columns at once, converted to ONNX and checked';

-- The vector answers' cores, like the predict cores (sql/040_serving.sql): they answer
-- only from a model pgmodels._lookup loaded for this statement.
DO $do$
DECLARE
    core text;
    target record;
    ftype record;
    fn record;
BEGIN
    FOREACH core IN ARRAY ARRAY['float8[]', 'jsonb'] LOOP
        EXECUTE format(
            'CREATE OR REPLACE FUNCTION pgmodels._predict_vector(project_name text, model_id bigint, features %s, '
            'stamp double precision, loaded boolean, kind text) RETURNS real[] LANGUAGE plpython3u STABLE PARALLEL SAFE AS %L',
            core, E'f = GD.get(\'pgmodels.predict_vector\')\n'
                  || E'if f is None and \'pgmodels.active\' in GD: from pgmodels.serving.vectors import predict_vector as f; GD[\'pgmodels.predict_vector\'] = f\n'
                  || 'return f(project_name, model_id, features, stamp, loaded, kind) if f else None');
        EXECUTE format('COMMENT ON FUNCTION pgmodels._predict_vector(text, bigint, %s, double precision, boolean, text) IS %L',
                       core, 'internal: the core of predict_joint() and decompose()');
    END LOOP;
    FOR fn IN SELECT * FROM (VALUES
        ('predict_joint', 'joint', 'the values of a joint regression model''s targets, in the order they were trained'),
        ('decompose', 'decompose', 'the components of a decomposition (PCA) model')) AS f(name, kind, what)
    LOOP
        FOR target IN SELECT * FROM (VALUES
            ('project_name text', '$1, 0', 'the deployed model of a project'),
            ('model_id bigint', '''''::text, $1', 'a model version chosen by id')) AS t(arg, pass, what)
        LOOP
            FOR ftype IN SELECT * FROM (VALUES
                ('real[]', '$2::float8[]'), ('double precision[]', '$2'), ('numeric[]', '$2::float8[]'),
                ('integer[]', '$2::float8[]'), ('bigint[]', '$2::float8[]'), ('smallint[]', '$2::float8[]'),
                ('jsonb', '$2')) AS f(sqltype, cast_expr)
            LOOP
                EXECUTE format(
                    'CREATE OR REPLACE FUNCTION @extschema@.%I(%s, features %s) RETURNS real[] '
                    'LANGUAGE sql STABLE PARALLEL SAFE AS %L',
                    fn.name, target.arg, ftype.sqltype,
                    format('SELECT coalesce(pgmodels._predict_vector(%1$s, %2$s, pgmodels._stamp(), NULL, %3$L), '
                           'pgmodels._predict_vector(%1$s, %2$s, pgmodels._stamp(), pgmodels._lookup(%1$s, pgmodels._credential()), %3$L), '
                           'pgmodels._raise_pending(NULL::real[]))', target.pass, ftype.cast_expr, fn.kind));
                EXECUTE format('COMMENT ON FUNCTION @extschema@.%I(%s, %s) IS %L', fn.name, split_part(target.arg, ' ', 2),
                               ftype.sqltype, format('%s for %s, from features given as %s', fn.what, target.what,
                                                     CASE ftype.sqltype WHEN 'jsonb' THEN 'a jsonb object keyed by feature name'
                                                                        ELSE 'an array in feature order' END));
            END LOOP;
        END LOOP;
    END LOOP;
END
$do$;

CREATE OR REPLACE FUNCTION pgmodels._snapshot(relation_name text)
RETURNS TABLE (relation text, source text, rows bigint)
LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return []
from pgmodels.training.snapshots import snapshot_udf; return snapshot_udf(relation_name)
$$;
COMMENT ON FUNCTION pgmodels._snapshot(text) IS 'internal: the core of snapshot()';

-- For roles that may execute train() (the core checks it), with the caller's rights.
CREATE OR REPLACE FUNCTION @extschema@.snapshot(relation_name text)
RETURNS TABLE (relation text, source text, rows bigint)
LANGUAGE sql VOLATILE
AS $$
    SELECT * FROM pgmodels._snapshot($1)
    UNION ALL
    SELECT NULL, NULL, NULL WHERE pgmodels._raise_pending(NULL::boolean)
$$;
COMMENT ON FUNCTION @extschema@.snapshot(text) IS 'copies a relation''s rows into a snapshot table of pgmodels'' own (schema pgmodels_snapshots), readable by the caller, that train() can train on again and again';

-- Grants of this area. Functions are created executable by PUBLIC; internal ones are not.
REVOKE EXECUTE ON FUNCTION
    pgmodels._snapshot_create(oid, oid, text), pgmodels._snapshot(text), pgmodels._snapshot_type(oid, integer),
    pgmodels._snapshot_schema_check(), pgmodels._snapshot_check(oid),
    pgmodels._train_joint(text, text, text, text[], text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean),
    pgmodels._predict_vector(text, bigint, double precision[], double precision, boolean, text),
    pgmodels._predict_vector(text, bigint, jsonb, double precision, boolean, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    -- check the caller themselves: a credential for this statement and EXECUTE on train()
    -- (the snapshot functions), EXECUTE on train() (the joint core, which train_joint()
    -- calls as the caller)
    pgmodels._snapshot_create(oid, oid, text), pgmodels._snapshot(text),
    -- the type a snapshot gives a column, which the caller converts it to: it reads pg_type
    pgmodels._snapshot_type(oid, integer),
    -- the checks training runs as the caller before it reads a snapshot: they only read
    -- the catalog and raise
    pgmodels._snapshot_schema_check(), pgmodels._snapshot_check(oid),
    pgmodels._train_joint(text, text, text, text[], text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean),
    -- the serving cores the inlined predict_joint and decompose wrappers call as the
    -- caller: they answer only from models _lookup loaded for this statement
    pgmodels._predict_vector(text, bigint, double precision[], double precision, boolean, text),
    pgmodels._predict_vector(text, bigint, jsonb, double precision, boolean, text)
TO PUBLIC;

-- sql/124_explain_catalog.sql
-- The tables and types of 125_explain.sql: created once, by the release that added them (an
-- upgrade script alters them); the functions there are replayed by every upgrade.

-- What explains a model version's predictions: made by train() from the fitted model (or
-- by set_reference() for a model that has none: an imported one), stored with the
-- version and checked by sha256 like its artifact. record is an .npz archive of plain
-- arrays (numbers, booleans, fixed-width text) and a JSON description, read without
-- pickle (python_udfs/pgmodels/explain/record.py). Written only by
-- pgmodels._store_explainer; read only by definer code.
CREATE TABLE pgmodels.model_explainers (
    model_id         bigint PRIMARY KEY REFERENCES pgmodels.models (id) ON DELETE CASCADE,
    -- tree: exact path-dependent TreeSHAP; linear: exact coefficient x (value - mean);
    -- sampling: a permutation-sampling estimate, approximate
    kind             text NOT NULL CHECK (kind IN ('tree', 'linear', 'sampling')),
    exact            boolean NOT NULL CHECK (exact = (kind <> 'sampling')),
    method           text NOT NULL,
    -- what the contributions add up to: the margin (log-odds, per class), a class
    -- probability, or the regression value
    output           text NOT NULL CHECK (output IN ('margin', 'probability', 'value')),
    record           bytea NOT NULL,
    record_sha256    bytea NOT NULL CHECK (length(record_sha256) = 32),
    -- global importance: per feature, the mean absolute contribution over importance_rows
    -- rows of the training split (or of set_reference's relation)
    importance       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(importance) = 'object'),
    importance_rows  integer NOT NULL CHECK (importance_rows >= 0),
    source           text NOT NULL CHECK (source IN ('training', 'set_reference')),
    created_by       name NOT NULL DEFAULT session_user,
    created_at       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgmodels.model_explainers IS 'per model version: what explains its predictions (an npz record checked by sha256: trees, coefficients or sampling background), and its global feature importance';
REVOKE ALL ON pgmodels.model_explainers FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pgmodels.model_explainers', '');

-- What an explain core answers: parallel arrays, one element per answer row (the row of the
-- input it explains, the feature, its value as text, its contribution), which the SQL
-- wrappers unnest. The base comes first as the feature "(base)".
CREATE TYPE pgmodels.explanation AS (
    row_number integer[], feature text[], value text[], contribution double precision[]);
COMMENT ON TYPE pgmodels.explanation IS 'internal: an explanation as parallel arrays (row, feature, value, contribution), the base first as "(base)"';

-- sql/125_explain.sql
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

-- explain_prediction() and explain_batch() work as predict() does (sql/040_serving.sql):
-- the wrappers are SQL functions that hand the features over as the caller (a row becomes
-- jsonb with the caller's rights: definer code never sees a type the caller defined), the
-- cores answer only from what pgmodels._explain_lookup loaded for this statement, and the
-- lookup (definer) checks the caller's explain privilege, which predict does not give:
-- contributions tell more of a model than its answers (a probe of each feature becomes one
-- call), so the owner grants it by name: grant_project(p, role, 'explain').

-- Loads a model and its explainer record into the backend's caches as the ones this
-- statement (or, with once, this call) explains with. Not for PUBLIC: only
-- _explain_lookup calls it, with what it read from the catalog.
CREATE OR REPLACE FUNCTION pgmodels._explain_load(project_name text, model_id bigint, stamp double precision,
                                                  model pgmodels.served_model, explainer bytea,
                                                  explainer_sha256 bytea, once boolean)
RETURNS boolean
LANGUAGE plpython3u STABLE PARALLEL SAFE
AS $$
if 'pgmodels.active' not in GD: return None  # _explain_lookup activates first
from pgmodels.explain.cache import load; return load(project_name, model_id, stamp, model, explainer, explainer_sha256, once)
$$;
COMMENT ON FUNCTION pgmodels._explain_load(text, bigint, double precision, pgmodels.served_model, bytea, bytea, boolean) IS 'internal: loads a model and its explainer record into the backend''s caches for this statement (or one call); called by _explain_lookup only';

-- Definer: the catalog is not readable by PUBLIC. Like _lookup it is the gate of the
-- cores; _lookup's master switch does not cover it (revoke this one too to turn
-- explaining off for all but the roles granted it).
CREATE OR REPLACE FUNCTION pgmodels._explain_lookup(project_name text, model_id bigint, credential text) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid;
    once boolean;
    loaded boolean;
    served pgmodels.served_model;
    digest bytea;
BEGIN
    IF project_name IS NULL OR model_id IS NULL THEN
        RETURN NULL;
    END IF;
    caller := pgmodels._verify_caller(credential);
    IF pgmodels._activate() IS NOT NULL THEN
        PERFORM pgmodels._raise_pending(NULL::integer);
    END IF;
    once := caller IS DISTINCT FROM (SELECT r.oid FROM pg_roles r WHERE r.rolname = coalesce(
                nullif(current_setting('role'), 'none'), session_user));
    served := pgmodels._resolve(project_name, model_id, caller, 'explain', false);
    SELECT x.record_sha256 INTO digest FROM pgmodels.model_explainers x WHERE x.model_id = served.id;
    IF digest IS NULL THEN
        RAISE EXCEPTION 'model % (version % of project "%") has no explainer', served.id, served.version, served.project
            USING ERRCODE = '55000',
                  DETAIL = CASE WHEN served.imported THEN 'It was imported, and nothing has given it one yet.'
                                WHEN served.task NOT IN ('classification', 'regression')
                                THEN format('Models of task %s are not explained.', served.task)
                                ELSE 'It was trained before pgmodels kept explainers, or its explainer could not be made (see its training record''s "explainer" entry).' END,
                  HINT = CASE WHEN served.imported
                              THEN format('Its owner can give it an approximate one from rows like the ones it scores: SELECT set_reference(%L, ''relation'', %s).', served.project, served.id)
                              ELSE 'Train the project again to get a version with an explainer.' END;
    END IF;
    loaded := pgmodels._explain_load(project_name, model_id, pgmodels._stamp(), served, NULL, digest, once);
    IF loaded IS NOT NULL AND NOT loaded THEN
        served := pgmodels._resolve(project_name, model_id, caller, 'explain', true);
        loaded := pgmodels._explain_load(project_name, model_id, pgmodels._stamp(), served,
                                         (SELECT x.record FROM pgmodels.model_explainers x WHERE x.model_id = served.id),
                                         digest, once);
    END IF;
    IF NOT coalesce(loaded, false) THEN
        PERFORM pgmodels._raise_pending(NULL::integer);
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION pgmodels._explain_lookup(text, bigint, text) IS 'internal: checks that the caller may explain with a project (model_id 0) or a model, and loads it and its explainer into the backend''s caches for this statement';

CREATE OR REPLACE FUNCTION pgmodels._explain_batch(project_name text, model_id bigint, numeric_features bytea,
                                                   "rows" jsonb, top_n integer, class_label text, stamp double precision,
                                                   loaded boolean)
RETURNS pgmodels.explanation LANGUAGE plpython3u STABLE PARALLEL SAFE
AS $$
if 'pgmodels.active' not in GD: return None  # the lookup activates first
from pgmodels.explain.serve import explain_batch; return explain_batch(project_name, model_id, numeric_features, rows, top_n, class_label, stamp, loaded)
$$;
COMMENT ON FUNCTION pgmodels._explain_batch(text, bigint, bytea, jsonb, integer, text, double precision, boolean) IS 'internal: the core of explain_batch(): rows as array_send(real[]) or a jsonb array';

-- The cores and the wrappers, for each way of naming the model (project name, model id)
-- and each features type predict() takes. The base comes first, then the features by
-- |contribution|; top_n keeps that many features and sums the rest as "(other)".
DO $do$
DECLARE
    core text;
    target record;
    ftype record;
BEGIN
    FOREACH core IN ARRAY ARRAY['float8[]', 'float4[]', 'jsonb'] LOOP
        EXECUTE format(
            'CREATE OR REPLACE FUNCTION pgmodels._explain(project_name text, model_id bigint, features %s, top_n integer, '
            'class_label text, stamp double precision, loaded boolean) RETURNS pgmodels.explanation '
            'LANGUAGE plpython3u STABLE PARALLEL SAFE AS %L', core,
            E'if \'pgmodels.active\' not in GD: return None  # the lookup activates first\n'
            'from pgmodels.explain.serve import explain_prediction; '
            'return explain_prediction(project_name, model_id, features, top_n, class_label, stamp, loaded)');
        EXECUTE format('COMMENT ON FUNCTION pgmodels._explain(text, bigint, %s, integer, text, double precision, boolean) IS %L',
                       core, 'internal: the core of explain_prediction()');
    END LOOP;
    FOR target IN SELECT * FROM (VALUES
        ('project_name text', '$1, 0', 'the deployed model of a project'),
        ('model_id bigint', '''''::text, $1', 'a model version chosen by id')) AS t(arg, pass, what)
    LOOP
        FOR ftype IN SELECT f.sqltype, f.cast_expr FROM pgmodels._feature_forms() f
        LOOP
            EXECUTE format(
                'CREATE OR REPLACE FUNCTION @extschema@.explain_prediction(%s, %s %s, top_n integer DEFAULT NULL, '
                'class text DEFAULT NULL) RETURNS TABLE (feature text, value text, contribution double precision) '
                'LANGUAGE sql STABLE PARALLEL SAFE ROWS 20 AS %L',
                target.arg, CASE WHEN ftype.sqltype = 'anyelement' THEN '"row"' ELSE 'features' END, ftype.sqltype,
                format('SELECT u.feature, u.value, u.contribution FROM (SELECT coalesce('
                       'pgmodels._explain(%1$s, %2$s, $3, $4, pgmodels._stamp(), NULL), '
                       'pgmodels._explain(%1$s, %2$s, $3, $4, pgmodels._stamp(), '
                       'pgmodels._explain_lookup(%1$s, pgmodels._credential())), '
                       'pgmodels._raise_pending(NULL::pgmodels.explanation)) AS e OFFSET 0) s, '
                       'ROWS FROM (pg_catalog.unnest((s.e).feature), pg_catalog.unnest((s.e).value), '
                       'pg_catalog.unnest((s.e).contribution)) WITH ORDINALITY '
                       'AS u(feature, value, contribution, n) ORDER BY u.n', target.pass, ftype.cast_expr));
            EXECUTE format('COMMENT ON FUNCTION @extschema@.explain_prediction(%s, %s, integer, text) IS %L',
                split_part(target.arg, ' ', 2), ftype.sqltype,
                format('why %s predicts what it does for features given as %s: each feature''s contribution to the '
                       'raw output (the margin of a class, or the value), the base first, by |contribution|; needs '
                       'the explain privilege', target.what,
                       CASE ftype.sqltype WHEN 'anyelement' THEN 'a row'
                                          WHEN 'jsonb' THEN 'a jsonb object' ELSE 'an array in feature order' END));
        END LOOP;
        FOR ftype IN SELECT * FROM (VALUES
            ('real[]', 'pg_catalog.array_send($2), NULL::jsonb'),
            ('anyarray', 'NULL::bytea, pg_catalog.to_jsonb($2)')) AS f(sqltype, pass)
        LOOP
            EXECUTE format(
                'CREATE OR REPLACE FUNCTION @extschema@.explain_batch(%s, %s %s, top_n integer DEFAULT NULL, '
                'class text DEFAULT NULL) RETURNS TABLE (row_number integer, feature text, value text, '
                'contribution double precision) LANGUAGE sql STABLE PARALLEL SAFE ROWS 1000 AS %L',
                target.arg, CASE WHEN ftype.sqltype = 'anyarray' THEN '"rows"' ELSE 'features' END, ftype.sqltype,
                format('SELECT u.row_number, u.feature, u.value, u.contribution FROM (SELECT coalesce('
                       'pgmodels._explain_batch(%1$s, %2$s, $3, $4, pgmodels._stamp(), NULL), '
                       'pgmodels._explain_batch(%1$s, %2$s, $3, $4, pgmodels._stamp(), '
                       'pgmodels._explain_lookup(%1$s, pgmodels._credential())), '
                       'pgmodels._raise_pending(NULL::pgmodels.explanation)) AS e OFFSET 0) s, '
                       'ROWS FROM (pg_catalog.unnest((s.e).row_number), pg_catalog.unnest((s.e).feature), '
                       'pg_catalog.unnest((s.e).value), pg_catalog.unnest((s.e).contribution)) WITH ORDINALITY AS u(row_number, feature, value, contribution, n) ORDER BY u.n',
                       target.pass, ftype.pass));
            EXECUTE format('COMMENT ON FUNCTION @extschema@.explain_batch(%s, %s, integer, text) IS %L',
                split_part(target.arg, ' ', 2), ftype.sqltype,
                format('explanations of many rows in one model run, for %s: rows given as %s; per row the base '
                       'first, then the features by |contribution|; needs the explain privilege', target.what,
                       CASE ftype.sqltype WHEN 'real[]' THEN 'a real[] (flat, or rows x features)'
                            ELSE 'an array of rows (array_agg(t)), of jsonb objects, or of numbers' END));
        END LOOP;
    END LOOP;
END
$do$;

-- The contributions output of stream consumers: add_consumer() with outputs. Prediction,
-- probabilities and label are always written; 'contributions' adds a jsonb column
-- (feature -> contribution, the base as "(base)") to the output table, and a consumer whose
-- output table has it writes them with each prediction (python_udfs/pgmodels/stream/
-- process.py). Its core checks EXECUTE on add_consumer(text, ..., integer), which an
-- administrator grants, and the explain privilege: so this form needs no grant of its own.
CREATE OR REPLACE FUNCTION pgmodels._add_consumer_outputs(stream_name text, consumer_name text, project_name text,
    outputs text[], output_table text, enrich_relation text, enrich_key text, from_beginning boolean,
    partitions integer)
RETURNS bigint LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.stream.consumers import add_with_outputs; return add_with_outputs(stream_name, consumer_name, project_name, outputs, output_table, enrich_relation, enrich_key, from_beginning, partitions)
$$;
COMMENT ON FUNCTION pgmodels._add_consumer_outputs(text, text, text, text[], text, text, text, boolean, integer) IS 'internal: the core of add_consumer(..., outputs), run as the caller';

CREATE OR REPLACE FUNCTION @extschema@.add_consumer(stream_name text, consumer_name text, project_name text,
    outputs text[], output_table text DEFAULT NULL, enrich_relation text DEFAULT NULL, enrich_key text DEFAULT NULL,
    from_beginning boolean DEFAULT false, partitions integer DEFAULT 1)
RETURNS bigint LANGUAGE sql VOLATILE
AS $$
    SELECT coalesce(pgmodels._add_consumer_outputs($1, $2, $3, $4, $5, $6, $7, $8, $9),
                    pgmodels._raise_pending(NULL::bigint))
$$;
COMMENT ON FUNCTION @extschema@.add_consumer(text, text, text, text[], text, text, text, boolean, integer) IS 'add_consumer() with the outputs it writes: prediction, probabilities and label always, and contributions (per prediction, feature -> contribution; needs the explain privilege); for the roles that may execute add_consumer()';

-- Grants of this area. Functions are created executable by PUBLIC (sql/090_grants.sql ran
-- before this file); internal ones are not, but for those listed here, each safe to call.
REVOKE EXECUTE ON FUNCTION
    pgmodels._take_staged_explainer(text),
    pgmodels._store_explainer(text),
    pgmodels._explain_load(text, bigint, double precision, pgmodels.served_model, bytea, bytea, boolean),
    pgmodels._explain_lookup(text, bigint, text),
    pgmodels._explain(text, bigint, double precision[], integer, text, double precision, boolean),
    pgmodels._explain(text, bigint, real[], integer, text, double precision, boolean),
    pgmodels._explain(text, bigint, jsonb, integer, text, double precision, boolean),
    pgmodels._explain_batch(text, bigint, bytea, jsonb, integer, text, double precision, boolean),
    pgmodels._add_consumer_outputs(text, text, text, text[], text, text, text, boolean, integer)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    -- train() calls it as the caller: it stores only a record this backend just staged, for
    -- a model of a project the staging role owns
    pgmodels._store_explainer(text),
    -- the gate: it checks the caller's credential and explain privilege itself
    pgmodels._explain_lookup(text, bigint, text),
    -- the cores the explain wrappers call as the caller: they answer only from what
    -- _explain_lookup loaded for this statement, and take no model from the caller
    pgmodels._explain(text, bigint, double precision[], integer, text, double precision, boolean),
    pgmodels._explain(text, bigint, real[], integer, text, double precision, boolean),
    pgmodels._explain(text, bigint, jsonb, integer, text, double precision, boolean),
    pgmodels._explain_batch(text, bigint, bytea, jsonb, integer, text, double precision, boolean),
    -- add_consumer(..., outputs)'s core, run as the caller: it checks EXECUTE on
    -- add_consumer() and the explain privilege itself
    pgmodels._add_consumer_outputs(text, text, text, text[], text, text, text, boolean, integer)
TO PUBLIC;

-- sql/126_rollouts_catalog.sql
-- The tables of 127_rollouts.sql (safe rollouts: shadow, canary, champion/challenger):
-- created once, by the release that added them (an upgrade script alters them); the
-- functions there are replayed by every upgrade. Written only by pgmodels' definer
-- functions; read by definer code and through the views of 127_rollouts.sql.

-- One row per rollout: a candidate model version beside a project's deployed one
-- (the champion). At most one active rollout per project. rule: the automatic decision
-- (python_udfs/pgmodels/rollout/decide.py): metric, margin, min_outcomes, max_error_rate,
-- confidence, auto.
CREATE TABLE pgmodels.rollout_runs (
    id            bigserial PRIMARY KEY,
    project_id    bigint NOT NULL REFERENCES pgmodels.projects (id) ON DELETE CASCADE,
    champion_id   bigint NOT NULL REFERENCES pgmodels.models (id) ON DELETE CASCADE,
    candidate_id  bigint NOT NULL REFERENCES pgmodels.models (id) ON DELETE CASCADE,
    mode          text NOT NULL CHECK (mode IN ('shadow', 'canary')),
    fraction      real CHECK (fraction > 0 AND fraction < 1),
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'promoted', 'aborted')),
    rule          jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(rule) = 'object'),
    started_by    name NOT NULL DEFAULT session_user,
    started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended_at      timestamptz,
    decision      text,
    reason        text,
    decided_at    timestamptz,
    -- the pg_cron entry that evaluates it (as the role that started it), while active
    cron_job_id   bigint,
    CHECK ((mode = 'canary') = (fraction IS NOT NULL)),
    CHECK ((status = 'active') = (ended_at IS NULL)),
    CHECK (champion_id <> candidate_id)
);
COMMENT ON TABLE pgmodels.rollout_runs IS 'one row per rollout: champion and candidate model, mode (shadow or canary), canary fraction, status, automatic rule and the last decision';
CREATE UNIQUE INDEX rollout_runs_one_active ON pgmodels.rollout_runs (project_id) WHERE status = 'active';
REVOKE ALL ON pgmodels.rollout_runs FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pgmodels.rollout_runs', '');
SELECT pg_catalog.pg_extension_config_dump('pgmodels.rollout_runs_id_seq', '');

-- Every change and every evaluation of a rollout, with the numbers it was decided on.
CREATE TABLE pgmodels.rollout_history (
    id          bigserial PRIMARY KEY,
    rollout_id  bigint NOT NULL REFERENCES pgmodels.rollout_runs (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    action      text NOT NULL CHECK (action IN ('start', 'alter', 'promote', 'abort', 'wait')),
    automatic   boolean NOT NULL DEFAULT false,
    reason      text,
    numbers     jsonb,
    by_role     name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE pgmodels.rollout_history IS 'every start, change, evaluation and decision of a rollout, with the numbers it rested on';
CREATE INDEX rollout_history_rollout_idx ON pgmodels.rollout_history (rollout_id, id);
REVOKE ALL ON pgmodels.rollout_history FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pgmodels.rollout_history', '');
SELECT pg_catalog.pg_extension_config_dump('pgmodels.rollout_history_id_seq', '');

-- The answers a rollout's versions gave, by key: the candidate's (shadow or canary) and
-- the champion's (in shadow, on the candidate's row as champion_prediction: the same
-- input; in canary, for a control share of keys as large as the canary's, a row of its
-- own). A log, which a scoring path only appends to, so it costs an insert and no more:
-- no key of its own, no foreign key (a per-row check; a rollout's rows go with it by the
-- trigger in 127_rollouts.sql), a BRIN index (rollout ids grow with time, as the rows
-- do). Kept for the rule's retention_days (30 by default), then deleted by the evaluation.
CREATE TABLE pgmodels.rollout_predictions (
    rollout_id           bigint NOT NULL,
    key                  text,
    model_id             bigint NOT NULL,
    model_version        integer NOT NULL,
    prediction           real,
    champion_prediction  real,
    -- champion: the deployed version's answer (a canary's control group); shadow or
    -- canary: the candidate's
    role                 text NOT NULL CHECK (role IN ('champion', 'shadow', 'canary')),
    source               text NOT NULL CHECK (source IN ('sql', 'batch', 'stream', 'proxy')),
    error                text,
    latency_ms           real,
    at                   timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE pgmodels.rollout_predictions IS 'the answers of a rollout''s versions with their key, model version, role (champion, shadow, canary), source mode and time; a shadow row carries the champion''s answer to the same input; a candidate''s failure has error set and no prediction';
CREATE INDEX rollout_predictions_rollout_idx ON pgmodels.rollout_predictions USING brin (rollout_id);
REVOKE ALL ON pgmodels.rollout_predictions FROM PUBLIC;

-- Where a project's true labels arrive, later, by key: registered by the project's owner
-- role and read as that role, and only as it, when a rollout is evaluated. The oid with
-- the qualified name it had: a relation dropped, renamed or replaced under a reused oid
-- is refused at evaluation.
CREATE TABLE pgmodels.outcome_sources (
    project_id    bigint PRIMARY KEY REFERENCES pgmodels.projects (id) ON DELETE CASCADE,
    relation      oid NOT NULL,
    relation_name text NOT NULL,
    key_column    name NOT NULL,
    label_column  name NOT NULL,
    time_column   name,
    owner_role    oid NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE pgmodels.outcome_sources IS 'per project: the relation where true labels arrive by key (key, label and time columns, the qualified name it had) and the role, the project''s owner, that reads it';
REVOKE ALL ON pgmodels.outcome_sources FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pgmodels.outcome_sources', '');

-- sql/127_rollouts.sql
-- Safe rollouts: start_rollout(), alter_rollout(), promote_rollout(), abort_rollout(),
-- rollout_version(), register_outcomes(), rollout_report(), evaluate_rollout() and the
-- views pgmodels.rollouts and pgmodels.rollout_decisions. Tables: 126_rollouts_catalog.sql.
--
-- A rollout puts a candidate version of a project beside its deployed one (the
-- champion). Every mode scores through pgmodels._lookup, which registers the project's
-- active rollout with the model for the statement; the scoring code then routes
-- (python_udfs/pgmodels/rollout/route.py): in shadow the candidate scores every input
-- and only the champion answers; in canary a fraction of keys is answered by the
-- candidate. A key's share is the first 52 bits of sha256('<rollout id>:<key>') over
-- 2^52; the candidate answers a key whose share is below the fraction, so raising the
-- fraction keeps every key that was already on the candidate, and rollout_version()
-- tells an application which version a key gets.

-- A rollout's start, change or end reaches every backend's kept serving decisions at
-- once, as a deploy does (sql/040_serving.sql).
CREATE OR REPLACE TRIGGER catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pgmodels.rollout_runs
    FOR EACH STATEMENT EXECUTE FUNCTION pgmodels._catalog_changed();
ALTER TABLE pgmodels.rollout_runs ENABLE ALWAYS TRIGGER catalog_changed;

-- A rollout's recorded answers go with it (a project dropped takes its rollouts); the log
-- has no foreign key, which would cost a check per row recorded. Not a definer: it runs as
-- whoever deletes rollouts, pgmodels' own definer code or a superuser (and a cascade from
-- pgmodels.projects runs as the tables' owner).
CREATE OR REPLACE FUNCTION pgmodels._rollouts_gone() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM pgmodels.rollout_predictions a WHERE a.rollout_id IN (SELECT g.id FROM gone g);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION pgmodels._rollouts_gone() IS 'internal: a statement trigger on rollout_runs: deletes the recorded answers of the rollouts deleted';
CREATE OR REPLACE TRIGGER rollouts_gone AFTER DELETE ON pgmodels.rollout_runs REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION pgmodels._rollouts_gone();
ALTER TABLE pgmodels.rollout_runs ENABLE ALWAYS TRIGGER rollouts_gone;

-- A deployment other than a rollout's own (deploy(), a train() that deploys, a monitor's
-- retrain) replaces the champion a rollout was measured against: the rollout ends, aborted,
-- with that reason in its history, and its evaluation job goes. Not a definer: only
-- pgmodels' definer functions (and superusers) write deployments.
CREATE OR REPLACE FUNCTION pgmodels._rollout_superseded() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ro pgmodels.rollout_runs;
BEGIN
    FOR ro IN SELECT r.* FROM pgmodels.rollout_runs r WHERE r.project_id = NEW.project_id AND r.status = 'active'
               FOR UPDATE LOOP
        PERFORM pgmodels._cron_unschedule(ro.cron_job_id);
        UPDATE pgmodels.rollout_runs r SET status = 'aborted', ended_at = clock_timestamp(), cron_job_id = NULL,
               decision = 'abort', reason = format('model %s was deployed (%s) while the rollout ran', NEW.model_id,
                                                   NEW.strategy), decided_at = clock_timestamp()
         WHERE r.id = ro.id;
        INSERT INTO pgmodels.rollout_history (rollout_id, action, reason, numbers, by_role)
        VALUES (ro.id, 'abort', format('model %s was deployed (%s) while the rollout ran', NEW.model_id, NEW.strategy),
                jsonb_build_object('deployment', NEW.id), NEW.deployed_by);
        PERFORM pg_notify('pgmodels_rollout', jsonb_build_object(
            'rollout_id', ro.id, 'project', (SELECT p.name FROM pgmodels.projects p WHERE p.id = ro.project_id),
            'action', 'abort', 'automatic', false, 'reason', 'a deployment replaced the champion',
            'model_id', NEW.model_id)::text);
    END LOOP;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION pgmodels._rollout_superseded() IS 'internal: a row trigger on deployments: a deployment that is not a rollout''s own ends the project''s active rollout (aborted, with the reason) and notifies pgmodels_rollout';
CREATE OR REPLACE TRIGGER rollout_superseded AFTER INSERT ON pgmodels.deployments
    FOR EACH ROW WHEN (NEW.strategy IS DISTINCT FROM 'rollout') EXECUTE FUNCTION pgmodels._rollout_superseded();
ALTER TABLE pgmodels.deployments ENABLE ALWAYS TRIGGER rollout_superseded;

-- The rule a rollout is decided by, with the defaults filled in and each value checked.
CREATE OR REPLACE FUNCTION pgmodels._rollout_rule(rule jsonb, task text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r jsonb := coalesce(rule, '{}'::jsonb);
    k text;
    metric text;
BEGIN
    IF jsonb_typeof(r) <> 'object' THEN
        RAISE EXCEPTION 'a rollout rule must be a jsonb object' USING ERRCODE = '22023';
    END IF;
    FOR k IN SELECT jsonb_object_keys(r) LOOP
        IF k NOT IN ('metric', 'margin', 'min_outcomes', 'max_error_rate', 'confidence', 'auto', 'schedule',
                     'retention_days') THEN
            RAISE EXCEPTION 'unknown rollout rule setting "%"', k USING ERRCODE = '22023',
                HINT = 'The settings are metric, margin, min_outcomes, max_error_rate, confidence, auto, schedule and retention_days.';
        END IF;
    END LOOP;
    metric := coalesce(r ->> 'metric', CASE WHEN task = 'regression' THEN 'r2' ELSE 'f1' END);
    IF metric NOT IN ('f1', 'accuracy', 'r2', 'mae') OR (task = 'regression') <> (metric IN ('r2', 'mae')) THEN
        RAISE EXCEPTION 'metric "%" does not apply to a % model', metric, task USING ERRCODE = '22023',
            HINT = 'Classification: f1 or accuracy; regression: r2 or mae.';
    END IF;
    r := jsonb_build_object('metric', metric, 'margin', 0.0, 'min_outcomes', 200, 'max_error_rate', 0.01,
                            'confidence', 0.95, 'auto', true, 'schedule', NULL, 'retention_days', 30)
         || (r - 'metric') || jsonb_build_object('metric', metric);
    IF jsonb_typeof(r -> 'margin') <> 'number' OR (r ->> 'margin')::float8 NOT BETWEEN 0 AND 1
       OR jsonb_typeof(r -> 'min_outcomes') <> 'number' OR (r ->> 'min_outcomes')::float8 NOT BETWEEN 1 AND 1e9
       OR jsonb_typeof(r -> 'max_error_rate') <> 'number' OR (r ->> 'max_error_rate')::float8 NOT BETWEEN 0 AND 1
       OR jsonb_typeof(r -> 'confidence') <> 'number' OR (r ->> 'confidence')::float8 NOT IN (0.8, 0.9, 0.95, 0.99)
       OR jsonb_typeof(r -> 'auto') <> 'boolean'
       OR jsonb_typeof(r -> 'retention_days') <> 'number' OR (r ->> 'retention_days')::float8 NOT BETWEEN 1 AND 3650
       OR jsonb_typeof(r -> 'schedule') NOT IN ('null', 'string') OR length(r ->> 'schedule') > 100 THEN
        RAISE EXCEPTION 'invalid rollout rule %', rule::text USING ERRCODE = '22023',
            DETAIL = 'margin is a number between 0 and 1, min_outcomes a number between 1 and 1e9, max_error_rate between 0 and 1, confidence one of 0.8, 0.9, 0.95 and 0.99, auto a boolean, schedule a cron expression, retention_days a number between 1 and 3650.';
    END IF;
    RETURN r;
END
$$;
COMMENT ON FUNCTION pgmodels._rollout_rule(jsonb, text) IS 'internal: a rollout''s decision rule with its defaults (metric f1 or r2, margin 0, min_outcomes 200, max_error_rate 0.01, confidence 0.95, auto true, retention_days 30), checked';

CREATE OR REPLACE FUNCTION pgmodels._rollout_check_fraction(mode text, fraction real) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF mode IS NULL OR mode NOT IN ('shadow', 'canary') THEN
        RAISE EXCEPTION 'unknown rollout mode "%"', mode USING ERRCODE = '22023',
            HINT = 'The modes are shadow (the candidate scores beside the champion, never answers) and canary (it answers a fraction of keys).';
    END IF;
    IF mode = 'canary' AND (fraction IS NULL OR NOT (fraction > 0 AND fraction < 1)) THEN
        RAISE EXCEPTION 'a canary''s fraction must be between 0 and 1, exclusive, got %', coalesce(fraction::text, 'NULL')
            USING ERRCODE = '22023', HINT = 'Pass fraction => 0.05 for 5 % of keys.';
    END IF;
    IF mode = 'shadow' AND fraction IS NOT NULL THEN
        RAISE EXCEPTION 'a shadow rollout takes no fraction' USING ERRCODE = '22023',
            DETAIL = 'In shadow the candidate scores every input and never answers.',
            HINT = 'Use mode canary to have it answer a fraction of keys.';
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._rollout_check_fraction(text, real) IS 'internal: raises unless the mode is shadow (no fraction) or canary (0 < fraction < 1)';

-- The pg_cron entry that evaluates a rollout every schedule, as the project's owner role
-- (which alone reads its outcomes: sql/129_rollouts_outcomes.sql), whoever started it (a
-- member of that role, or a superuser). The caller is checked by the callers.
CREATE OR REPLACE FUNCTION pgmodels._rollout_schedule(ro pgmodels.rollout_runs, caller oid) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    schedule text := ro.rule ->> 'schedule';
BEGIN
    IF NOT (ro.rule -> 'auto')::boolean OR (schedule IS NULL AND NOT pgmodels._cron_here()) THEN
        RETURN NULL;  -- evaluated by hand (evaluate_rollout), or by the user's own scheduler
    END IF;
    RETURN pgmodels._cron_schedule(
        format('pgmodels_rollout:%s:%s', (SELECT d.oid FROM pg_database d WHERE d.datname = current_database()), ro.id),
        coalesce(schedule, '* * * * *'), format('SELECT * FROM %I.evaluate_rollout(%s::bigint)', '@extschema@', ro.id),
        (SELECT p.owner::oid FROM pgmodels.projects p WHERE p.id = ro.project_id));
END
$$;
COMMENT ON FUNCTION pgmodels._rollout_schedule(pgmodels.rollout_runs, oid) IS 'internal: schedules a rollout''s automatic evaluation with pg_cron as the project''s owner role (every minute unless the rule names a schedule; none where pg_cron is not installed and no schedule was asked for)';

-- The core of start_rollout(). Definer: it writes the catalog. Owner only.
CREATE OR REPLACE FUNCTION pgmodels._rollout_start(credential text, project_name text, model_id bigint, mode text,
                                                   fraction real, rule jsonb)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    proj pgmodels.projects;
    cand pgmodels.models;
    champ pgmodels.models;
    ro pgmodels.rollout_runs;
    other bigint;
BEGIN
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.name = project_name FOR UPDATE;
    IF proj.id IS NULL THEN
        RAISE EXCEPTION 'project "%" does not exist', project_name USING ERRCODE = '42704';
    END IF;
    PERFORM pgmodels._require_owner(caller, proj);
    PERFORM pgmodels._rollout_check_fraction(mode, fraction);
    SELECT m.* INTO cand FROM pgmodels.models m WHERE m.id = _rollout_start.model_id;
    IF cand.id IS NULL THEN
        RAISE EXCEPTION 'model % does not exist', model_id USING ERRCODE = '42704';
    END IF;
    IF cand.project_id <> proj.id THEN
        RAISE EXCEPTION 'model % belongs to another project', model_id USING ERRCODE = '22023',
            HINT = format('A rollout tries a version of project "%s" itself: see pgmodels.overview.', proj.name);
    END IF;
    SELECT m.* INTO champ FROM pgmodels.deployments d JOIN pgmodels.models m ON m.id = d.model_id
     WHERE d.project_id = proj.id ORDER BY d.id DESC LIMIT 1;
    IF champ.id IS NULL THEN
        RAISE EXCEPTION 'project "%" has no deployed model', project_name USING ERRCODE = '55000',
            HINT = 'A rollout tries a candidate beside the deployed version: deploy() one first.';
    END IF;
    IF champ.id = cand.id THEN
        RAISE EXCEPTION 'model % is the deployed version of project "%"', model_id, project_name USING ERRCODE = '22023',
            HINT = 'Roll out another version: train() one, or see pgmodels.overview.';
    END IF;
    IF cand.task <> champ.task OR cand.feature_names <> champ.feature_names THEN
        RAISE EXCEPTION 'model % does not answer the same question as the deployed version', model_id
            USING ERRCODE = '22023',
                  DETAIL = format('The deployed version is a %s model of features (%s); model %s is a %s model of (%s).',
                                  champ.task, array_to_string(champ.feature_names, ', '), cand.id, cand.task,
                                  array_to_string(cand.feature_names, ', '));
    END IF;
    IF champ.task NOT IN ('classification', 'regression') THEN
        RAISE EXCEPTION 'rollouts are for classification and regression models, not %', champ.task
            USING ERRCODE = '0A000';
    END IF;
    SELECT r.id INTO other FROM pgmodels.rollout_runs r WHERE r.project_id = proj.id AND r.status = 'active';
    IF other IS NOT NULL THEN
        RAISE EXCEPTION 'project "%" already has an active rollout', project_name USING ERRCODE = '55006',
            DETAIL = format('Rollout %s is active.', other),
            HINT = format('Change it with alter_rollout(%s, ...), or end it with promote_rollout(%s) or abort_rollout(%s).',
                          other, other, other);
    END IF;
    INSERT INTO pgmodels.rollout_runs (project_id, champion_id, candidate_id, mode, fraction, rule, started_by)
    VALUES (proj.id, champ.id, cand.id, mode, fraction, pgmodels._rollout_rule(rule, champ.task), caller::regrole::text)
    RETURNING * INTO ro;
    UPDATE pgmodels.rollout_runs r SET cron_job_id = pgmodels._rollout_schedule(ro, caller) WHERE r.id = ro.id;
    INSERT INTO pgmodels.rollout_history (rollout_id, action, reason, numbers, by_role)
    VALUES (ro.id, 'start', format('%s of version %s beside version %s', mode, cand.version, champ.version),
            jsonb_build_object('mode', mode, 'fraction', fraction, 'rule', ro.rule), caller::regrole::text);
    RETURN ro.id;
END
$$;
COMMENT ON FUNCTION pgmodels._rollout_start(text, text, bigint, text, real, jsonb) IS 'internal: the core of start_rollout() (definer: it writes the catalog), for the project''s owner';

-- A rollout locked for a change by its project's owner.
CREATE OR REPLACE FUNCTION pgmodels._rollout_for_owner(caller oid, rollout_id bigint) RETURNS pgmodels.rollout_runs
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ro pgmodels.rollout_runs;
    proj pgmodels.projects;
BEGIN
    SELECT r.* INTO ro FROM pgmodels.rollout_runs r WHERE r.id = rollout_id FOR UPDATE;
    IF ro.id IS NULL THEN
        RAISE EXCEPTION 'rollout % does not exist', coalesce(rollout_id::text, 'NULL') USING ERRCODE = '42704',
            HINT = 'See pgmodels.rollouts for the rollouts there are.';
    END IF;
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.id = ro.project_id;
    PERFORM pgmodels._require_owner(caller, proj);
    RETURN ro;
END
$$;
COMMENT ON FUNCTION pgmodels._rollout_for_owner(oid, bigint) IS 'internal: a rollout, locked, after checking that the role owns its project';

CREATE OR REPLACE FUNCTION pgmodels._rollout_require_active(ro pgmodels.rollout_runs, what text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF ro.status <> 'active' THEN
        RAISE EXCEPTION 'rollout % is %, it cannot be %', ro.id, ro.status, what USING ERRCODE = '55000',
            DETAIL = format('It ended at %s.', ro.ended_at),
            HINT = 'Start a new one with start_rollout().';
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._rollout_require_active(pgmodels.rollout_runs, text) IS 'internal: raises unless the rollout is active';

-- The core of alter_rollout().
CREATE OR REPLACE FUNCTION pgmodels._rollout_alter(credential text, rollout_id bigint, mode text, fraction real,
                                                   rule jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    ro pgmodels.rollout_runs := pgmodels._rollout_for_owner(caller, rollout_id);
    new_mode text;
    new_fraction real;
    new_rule jsonb;
BEGIN
    PERFORM pgmodels._rollout_require_active(ro, 'changed');
    new_mode := coalesce(mode, CASE WHEN fraction IS NOT NULL THEN 'canary' END, ro.mode);
    new_fraction := CASE WHEN new_mode = 'canary' THEN coalesce(fraction, ro.fraction) END;
    IF new_mode = 'shadow' AND fraction IS NOT NULL THEN
        new_fraction := fraction;  -- refused below, with the reason
    END IF;
    PERFORM pgmodels._rollout_check_fraction(new_mode, new_fraction);
    new_rule := CASE WHEN rule IS NULL THEN ro.rule
                     ELSE pgmodels._rollout_rule(ro.rule || rule, (SELECT m.task FROM pgmodels.models m WHERE m.id = ro.champion_id)) END;
    UPDATE pgmodels.rollout_runs r SET mode = new_mode, fraction = new_fraction, rule = new_rule WHERE r.id = ro.id;
    IF new_rule IS DISTINCT FROM ro.rule THEN
        PERFORM pgmodels._cron_unschedule(ro.cron_job_id);
        SELECT r.* INTO ro FROM pgmodels.rollout_runs r WHERE r.id = ro.id;
        UPDATE pgmodels.rollout_runs r SET cron_job_id = pgmodels._rollout_schedule(ro, caller) WHERE r.id = ro.id;
    END IF;
    INSERT INTO pgmodels.rollout_history (rollout_id, action, reason, numbers, by_role)
    VALUES (ro.id, 'alter', format('%s%s', new_mode, CASE WHEN new_fraction IS NOT NULL THEN ' at ' || new_fraction END),
            jsonb_build_object('mode', new_mode, 'fraction', new_fraction, 'rule', new_rule), caller::regrole::text);
END
$$;
COMMENT ON FUNCTION pgmodels._rollout_alter(text, bigint, text, real, jsonb) IS 'internal: the core of alter_rollout() (definer: it writes the catalog), for the project''s owner';

-- The core of promote_rollout() and abort_rollout(), and of evaluate_rollout()'s
-- decisions (action wait records an evaluation that decided nothing). A promote is a
-- deployment like any other (strategy rollout), in the project's history.
CREATE OR REPLACE FUNCTION pgmodels._rollout_decide(credential text, rollout_id bigint, action text, automatic boolean,
                                                    reason text, numbers jsonb)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    ro pgmodels.rollout_runs := pgmodels._rollout_for_owner(caller, rollout_id);
BEGIN
    IF action IS NULL OR action NOT IN ('promote', 'abort', 'wait') THEN
        RAISE EXCEPTION 'unknown rollout decision "%"', action USING ERRCODE = '22023';
    END IF;
    PERFORM pgmodels._rollout_require_active(ro, CASE action WHEN 'promote' THEN 'promoted' WHEN 'abort' THEN 'aborted'
                                                               ELSE 'evaluated' END);
    INSERT INTO pgmodels.rollout_history (rollout_id, action, automatic, reason, numbers, by_role)
    VALUES (ro.id, action, coalesce(automatic, false), reason, numbers, caller::regrole::text);
    UPDATE pgmodels.rollout_runs r SET decision = action, reason = _rollout_decide.reason, decided_at = clock_timestamp()
     WHERE r.id = ro.id;
    IF action = 'wait' THEN
        RETURN NULL;
    END IF;
    IF action = 'promote' THEN
        INSERT INTO pgmodels.deployments (project_id, model_id, strategy, deployed_by)
        VALUES (ro.project_id, ro.candidate_id, 'rollout', caller::regrole::text);
    ELSE
        -- the champion again, under a new deployment number: devices the canary gave the
        -- candidate take the champion's bundle as newer (a rollback is a new deployment)
        INSERT INTO pgmodels.deployments (project_id, model_id, strategy, deployed_by)
        SELECT d.project_id, d.model_id, 'rollout', caller::regrole::text FROM pgmodels.deployments d
         WHERE d.project_id = ro.project_id ORDER BY d.id DESC LIMIT 1;
    END IF;
    PERFORM pgmodels._cron_unschedule(ro.cron_job_id);
    UPDATE pgmodels.rollout_runs r SET status = CASE action WHEN 'promote' THEN 'promoted' ELSE 'aborted' END,
           ended_at = clock_timestamp(), cron_job_id = NULL
     WHERE r.id = ro.id;
    PERFORM pg_notify('pgmodels_rollout', jsonb_build_object(
        'rollout_id', ro.id, 'project', (SELECT p.name FROM pgmodels.projects p WHERE p.id = ro.project_id),
        'action', action, 'automatic', coalesce(automatic, false), 'reason', reason,
        'model_id', CASE action WHEN 'promote' THEN ro.candidate_id ELSE ro.champion_id END)::text);
    RETURN CASE action WHEN 'promote' THEN ro.candidate_id ELSE ro.champion_id END;
END
$$;
COMMENT ON FUNCTION pgmodels._rollout_decide(text, bigint, text, boolean, text, jsonb) IS 'internal: records a rollout''s decision (promote: a deployment of the candidate; abort: the deployed version again, as a new deployment; wait: an evaluation that decided nothing), for its project''s owner, and notifies channel pgmodels_rollout on promote and abort';

-- The user's side: each runs as its caller and hands the definer core the caller's
-- credential; the core checks that the caller owns the project.
CREATE OR REPLACE FUNCTION @extschema@.start_rollout(project_name text, model_id bigint, mode text,
                                                     fraction real DEFAULT NULL, rule jsonb DEFAULT NULL)
RETURNS bigint LANGUAGE sql VOLATILE
AS $$ SELECT pgmodels._rollout_start(pgmodels._credential(), $1, $2, $3, $4, $5) $$;
COMMENT ON FUNCTION @extschema@.start_rollout(text, bigint, text, real, jsonb) IS 'starts a rollout of a model version beside the project''s deployed one: shadow (it scores every input, never answers) or canary (it answers a fraction of keys); rule: the automatic decision (metric, margin, min_outcomes, max_error_rate, confidence, auto, schedule, retention_days); returns its id; for the project''s owner';

CREATE OR REPLACE FUNCTION @extschema@.alter_rollout(rollout_id bigint, fraction real DEFAULT NULL, mode text DEFAULT NULL,
                                                     rule jsonb DEFAULT NULL)
RETURNS void LANGUAGE sql VOLATILE
AS $$ SELECT pgmodels._rollout_alter(pgmodels._credential(), $1, $3, $2, $4) $$;
COMMENT ON FUNCTION @extschema@.alter_rollout(bigint, real, text, jsonb) IS 'changes an active rollout: its canary fraction (a fraction turns a shadow into a canary), its mode, or settings of its rule; for the project''s owner';

CREATE OR REPLACE FUNCTION @extschema@.promote_rollout(rollout_id bigint) RETURNS bigint
LANGUAGE sql VOLATILE
AS $$ SELECT pgmodels._rollout_decide(pgmodels._credential(), $1, 'promote', false, 'promoted by hand', NULL) $$;
COMMENT ON FUNCTION @extschema@.promote_rollout(bigint) IS 'ends an active rollout by deploying its candidate (a deployment with strategy rollout, in the history); returns the model id; for the project''s owner';

CREATE OR REPLACE FUNCTION @extschema@.abort_rollout(rollout_id bigint) RETURNS bigint
LANGUAGE sql VOLATILE
AS $$ SELECT pgmodels._rollout_decide(pgmodels._credential(), $1, 'abort', false, 'aborted by hand', NULL) $$;
COMMENT ON FUNCTION @extschema@.abort_rollout(bigint) IS 'ends an active rollout without deploying its candidate: every key goes back to the champion, which is deployed again under a new deployment number (devices the canary gave the candidate take it back); returns the champion''s model id; for the project''s owner';

-- Grants of this area. Functions are created executable by PUBLIC (sql/090_grants.sql ran
-- before this file); internal ones are not, but for those listed here, each safe to call.
REVOKE EXECUTE ON FUNCTION
    pgmodels._rollouts_gone(),
    pgmodels._rollout_superseded(),
    pgmodels._rollout_rule(jsonb, text),
    pgmodels._rollout_check_fraction(text, real),
    pgmodels._rollout_schedule(pgmodels.rollout_runs, oid),
    pgmodels._rollout_start(text, text, bigint, text, real, jsonb),
    pgmodels._rollout_for_owner(oid, bigint),
    pgmodels._rollout_require_active(pgmodels.rollout_runs, text),
    pgmodels._rollout_alter(text, bigint, text, real, jsonb),
    pgmodels._rollout_decide(text, bigint, text, boolean, text, jsonb)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    -- the cores the user's functions call as the caller: each checks the caller's
    -- credential and that it owns the project
    pgmodels._rollout_start(text, text, bigint, text, real, jsonb),
    pgmodels._rollout_alter(text, bigint, text, real, jsonb),
    pgmodels._rollout_decide(text, bigint, text, boolean, text, jsonb)
TO PUBLIC;

-- sql/128_rollouts_serving.sql
-- Rollouts in the scoring path: predict(), predict_proba() and predict_label() with a
-- routing key, the block scorer with keys, the writer of the answers a rollout records,
-- and rollout_version(). How a statement is routed: sql/127_rollouts.sql.

-- The keyed cores and wrappers: predict(project, features, key => customer_id) answers a
-- key by the version the project's rollout assigns it (rollout_version tells which),
-- and records the answer for the rollout's report. The key is converted to text in the
-- caller's own statement (its own type's output function, with its own rights).
DO $do$
DECLARE
    answer record;
    ftype record;
    core text;
BEGIN
    FOR answer IN SELECT * FROM (VALUES
        ('predict', 'real', 'the prediction'),
        ('predict_proba', 'real[]', 'the class probabilities'),
        ('predict_label', 'text', 'the predicted class label')) AS a(name, rettype, what)
    LOOP
        FOREACH core IN ARRAY ARRAY['float8[]', 'float4[]', 'jsonb'] LOOP
            EXECUTE format(
                'CREATE OR REPLACE FUNCTION pgmodels.%I(project_name text, model_id bigint, features %s, stamp double precision, '
                'loaded boolean, key text) RETURNS %s LANGUAGE plpython3u STABLE PARALLEL SAFE AS %L',
                '_' || answer.name, core, answer.rettype,
                format(E'if \'pgmodels.active\' not in GD: return None\n'
                       || E'from pgmodels.serving.predict import %1$s_key as f; return f(project_name, model_id, features, stamp, loaded, key)',
                       answer.name));
            EXECUTE format('COMMENT ON FUNCTION pgmodels.%I(text, bigint, %s, double precision, boolean, text) IS %L',
                '_' || answer.name, core, format('internal: the core of %s() with a routing key', answer.name));
        END LOOP;
        FOR ftype IN SELECT f.sqltype, f.cast_expr FROM pgmodels._feature_forms() f
        LOOP
            EXECUTE format(
                'CREATE OR REPLACE FUNCTION @extschema@.%I(project_name text, %s %s, key anycompatible) RETURNS %s '
                'LANGUAGE sql STABLE PARALLEL SAFE AS %L',
                answer.name, CASE WHEN ftype.sqltype = 'anyelement' THEN '"row"' ELSE 'features' END,
                ftype.sqltype, answer.rettype,
                format('SELECT coalesce(pgmodels.%1$I($1, 0, %2$s, pgmodels._stamp(), NULL, $3::text), '
                       'pgmodels.%1$I($1, 0, %2$s, pgmodels._stamp(), pgmodels._lookup($1, 0, pgmodels._credential()), $3::text), '
                       'pgmodels._raise_pending(NULL::%3$s))',
                       '_' || answer.name, ftype.cast_expr, answer.rettype));
            EXECUTE format('COMMENT ON FUNCTION @extschema@.%I(text, %s, anycompatible) IS %L',
                answer.name, ftype.sqltype,
                format('%s for the deployed model of a project, or for the version its rollout assigns the key (a customer id, say: see rollout_version), from features given as %s',
                       answer.what,
                       CASE ftype.sqltype WHEN 'anyelement' THEN 'a row'
                                          WHEN 'jsonb' THEN 'a jsonb object keyed by feature name'
                                          ELSE 'an array in feature order' END));
        END LOOP;
    END LOOP;
END
$do$;

-- A block of rows with a routing key per row (NULL: drawn at random), and the mode that
-- scores it (batch, stream, proxy or sql), which the rollout's records name.
CREATE OR REPLACE FUNCTION pgmodels._score_rows(project_name text, model_id bigint, numeric_features bytea,
                                                text_features text[], outputs text[], stamp double precision,
                                                loaded boolean, keys text[], source text)
RETURNS pgmodels.scored_rows LANGUAGE plpython3u STABLE PARALLEL SAFE
AS $$
if 'pgmodels.active' not in GD: return None  # _lookup activates first: without it no model is loaded to answer
from pgmodels.serving.predict import score_rows; return score_rows(project_name, model_id, numeric_features, text_features, outputs, stamp, loaded, keys, source)
$$;
COMMENT ON FUNCTION pgmodels._score_rows(text, bigint, bytea, text[], text[], double precision, boolean, text[], text) IS 'internal: scores a block of rows in one model run, routed by the statement''s rollout with one key per row (keys), recording for source (batch, stream, proxy, sql)';

-- Writes the answers this backend's scoring code recorded (python_udfs/pgmodels/rollout/
-- record.py). Definer: rollout_predictions is not writable by PUBLIC. It takes nothing
-- from its caller: it writes what pgmodels' own code in this backend put aside, which no
-- role can forge (PL/Python is untrusted). Open to PUBLIC: calling it only writes early.
CREATE OR REPLACE FUNCTION pgmodels._rollout_flush() RETURNS bigint
LANGUAGE plpython3u VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
if 'pgmodels.active' not in GD: return 0  # nothing was scored in this backend
from pgmodels.rollout.record import write; return write()
$$;
COMMENT ON FUNCTION pgmodels._rollout_flush() IS 'internal: writes the rollout answers this backend recorded to pgmodels.rollout_predictions (takes no argument: nothing a caller hands it is written)';

-- A key's place in [0, 1) for a rollout: the first 52 bits of sha256('<id>:<key>') over
-- 2^52, as python_udfs/pgmodels/rollout/route.py computes it.
CREATE OR REPLACE FUNCTION pgmodels._rollout_share(rollout_id bigint, key text) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT ('x' OPERATOR(pg_catalog.||) pg_catalog.left(pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(
               $1::text OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) $2, 'UTF8')), 'hex'), 13))::bit(52)::bigint
           OPERATOR(pg_catalog./) 4503599627370496.0::double precision
$$;
COMMENT ON FUNCTION pgmodels._rollout_share(bigint, text) IS 'internal: a key''s share in [0, 1) for a rollout: the first 52 bits of sha256(''<rollout id>:<key>'') over 2^52; a canary''s candidate answers the keys below its fraction';

-- Which version answers a key: for roles that may predict with the project.
CREATE OR REPLACE FUNCTION pgmodels._rollout_version(credential text, project_name text, key text,
                                                     OUT model_id bigint, OUT version integer, OUT role text,
                                                     OUT rollout_id bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    served pgmodels.served_model := pgmodels._resolve(project_name, 0, caller, 'predict', false);
    ro pgmodels.rollout_runs;
    s double precision;
BEGIN
    model_id := served.id;
    version := served.version;
    role := 'champion';
    SELECT r.* INTO ro FROM pgmodels.rollout_runs r JOIN pgmodels.projects p ON p.id = r.project_id
     WHERE p.name = project_name AND r.status = 'active';
    IF ro.id IS NULL THEN
        RETURN;
    END IF;
    rollout_id := ro.id;
    IF ro.mode = 'shadow' THEN
        role := 'champion (shadowed)';
        RETURN;
    END IF;
    IF key IS NULL THEN
        role := 'random';  -- a row without a key is drawn at random
        model_id := NULL;
        version := NULL;
        RETURN;
    END IF;
    s := pgmodels._rollout_share(ro.id, key);
    IF s < ro.fraction THEN
        SELECT m.id, m.version INTO model_id, version FROM pgmodels.models m WHERE m.id = ro.candidate_id;
        role := 'canary';
    ELSIF s < 2 * ro.fraction OR ro.fraction >= 0.5 THEN
        role := 'control';
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._rollout_version(text, text, text) IS 'internal: the core of rollout_version() (definer: the catalog is not readable by PUBLIC), for roles that may predict with the project';

CREATE OR REPLACE FUNCTION @extschema@.rollout_version(project_name text, key anycompatible,
                                                       OUT model_id bigint, OUT version integer, OUT role text,
                                                       OUT rollout_id bigint)
LANGUAGE sql STABLE
AS $$ SELECT * FROM pgmodels._rollout_version(pgmodels._credential(), $1, $2::text) $$;
COMMENT ON FUNCTION @extschema@.rollout_version(text, anycompatible) IS 'the model version that answers a key (a customer id, say) of a project: the deployed one (champion, or control: its answers are the canary''s comparison) or a canary''s candidate; the same in SQL, batch jobs, streams and pgmodels serve';

-- Grants of this area. Functions are created executable by PUBLIC (sql/090_grants.sql ran
-- before this file); internal ones are not, but for those listed here, each safe to call.
REVOKE EXECUTE ON FUNCTION
    pgmodels._predict(text, bigint, double precision[], double precision, boolean, text),
    pgmodels._predict(text, bigint, real[], double precision, boolean, text),
    pgmodels._predict(text, bigint, jsonb, double precision, boolean, text),
    pgmodels._predict_proba(text, bigint, double precision[], double precision, boolean, text),
    pgmodels._predict_proba(text, bigint, real[], double precision, boolean, text),
    pgmodels._predict_proba(text, bigint, jsonb, double precision, boolean, text),
    pgmodels._predict_label(text, bigint, double precision[], double precision, boolean, text),
    pgmodels._predict_label(text, bigint, real[], double precision, boolean, text),
    pgmodels._predict_label(text, bigint, jsonb, double precision, boolean, text),
    pgmodels._score_rows(text, bigint, bytea, text[], text[], double precision, boolean, text[], text),
    pgmodels._rollout_flush(),
    pgmodels._rollout_share(bigint, text),
    pgmodels._rollout_version(text, text, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    -- the keyed cores the inlined wrappers call as the caller: they answer only from
    -- models _lookup loaded for this statement, and take no model from the caller
    pgmodels._predict(text, bigint, double precision[], double precision, boolean, text),
    pgmodels._predict(text, bigint, real[], double precision, boolean, text),
    pgmodels._predict(text, bigint, jsonb, double precision, boolean, text),
    pgmodels._predict_proba(text, bigint, double precision[], double precision, boolean, text),
    pgmodels._predict_proba(text, bigint, real[], double precision, boolean, text),
    pgmodels._predict_proba(text, bigint, jsonb, double precision, boolean, text),
    pgmodels._predict_label(text, bigint, double precision[], double precision, boolean, text),
    pgmodels._predict_label(text, bigint, real[], double precision, boolean, text),
    pgmodels._predict_label(text, bigint, jsonb, double precision, boolean, text),
    -- the block core: like the others, it answers only from models _lookup loaded
    pgmodels._score_rows(text, bigint, bytea, text[], text[], double precision, boolean, text[], text),
    -- writes only what this backend's scoring code recorded
    pgmodels._rollout_flush(),
    -- arithmetic
    pgmodels._rollout_share(bigint, text),
    -- checks the caller's credential and predict privilege
    pgmodels._rollout_version(text, text, text)
TO PUBLIC;

-- sql/129_rollouts_outcomes.sql
-- Rollouts decided on real outcomes: register_outcomes(), rollout_report(),
-- evaluate_rollout() (which pg_cron runs on the rollout's schedule) and the views
-- pgmodels.rollouts and pgmodels.rollout_decisions. The report joins the answers a
-- rollout recorded (pgmodels.rollout_predictions) to the true labels that arrive later in
-- the relation register_outcomes() named. The project's owner role registers it and only
-- that role reads it (a member, even a superuser, evaluates after SET ROLE to it; pg_cron
-- runs the evaluation as it): whatever code the relation runs (a view's functions, a
-- domain's check, a type's cast) runs as the role that wrote it, never as another; the
-- read runs with search_path pg_catalog, so no operator another role put in a schema can
-- take part; only text comes back to pgmodels' code.

CREATE OR REPLACE FUNCTION pgmodels._outcomes_register(credential text, project_name text, relation oid,
                                                       key_column text, label_column text, time_column text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    proj pgmodels.projects;
    col text;
BEGIN
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.name = project_name FOR UPDATE;
    IF proj.id IS NULL THEN
        RAISE EXCEPTION 'project "%" does not exist', project_name USING ERRCODE = '42704';
    END IF;
    PERFORM pgmodels._require_owner(caller, proj);
    IF caller <> proj.owner::oid THEN
        RAISE EXCEPTION 'outcomes are registered by the project''s owner role itself' USING ERRCODE = '42501',
            DETAIL = format('Project "%s" belongs to role "%s": its outcomes are read as that role, and only as it.',
                            proj.name, proj.owner),
            HINT = format('SET ROLE %s; then register_outcomes().', proj.owner);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = relation AND c.relkind IN ('r', 'p', 'v', 'm', 'f')) THEN
        RAISE EXCEPTION 'relation with oid % is not a table or view', relation USING ERRCODE = '42809';
    END IF;
    FOREACH col IN ARRAY ARRAY[key_column, label_column] || CASE WHEN time_column IS NULL THEN ARRAY[]::text[]
                                                                 ELSE ARRAY[time_column] END LOOP
        IF col IS NULL OR NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = relation AND a.attname = col
                                                                    AND a.attnum > 0 AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'column "%" does not exist in relation %', coalesce(col, 'NULL'), relation::regclass
                USING ERRCODE = '42703',
                      HINT = 'Name the key column (the key predictions were routed by), the label column (the true answer) and, optionally, the time column.';
        END IF;
        IF NOT has_column_privilege(caller, relation, col, 'SELECT') THEN
            RAISE EXCEPTION 'permission denied for relation %', relation::regclass USING ERRCODE = '42501',
                DETAIL = format('Role "%s" cannot read column "%s"; outcomes are read with its rights.', caller::regrole, col);
        END IF;
    END LOOP;
    IF time_column IS NOT NULL AND (SELECT a.atttypid FROM pg_attribute a WHERE a.attrelid = relation AND a.attname = time_column)
       NOT IN ('timestamptz'::regtype, 'timestamp'::regtype, 'date'::regtype) THEN
        RAISE EXCEPTION 'time column "%" must be a timestamp or a date', time_column USING ERRCODE = '42804';
    END IF;
    INSERT INTO pgmodels.outcome_sources AS o (project_id, relation, relation_name, key_column, label_column, time_column,
                                               owner_role)
    VALUES (proj.id, relation, relation::regclass::text, key_column, label_column, time_column, caller)
    ON CONFLICT (project_id) DO UPDATE SET relation = EXCLUDED.relation, relation_name = EXCLUDED.relation_name,
        key_column = EXCLUDED.key_column,
        label_column = EXCLUDED.label_column, time_column = EXCLUDED.time_column, owner_role = EXCLUDED.owner_role,
        registered_at = clock_timestamp();
END
$$;
COMMENT ON FUNCTION pgmodels._outcomes_register(text, text, oid, text, text, text) IS 'internal: the core of register_outcomes() (definer: it writes the catalog), for the project''s owner role itself, which must be able to read the columns';

CREATE OR REPLACE FUNCTION @extschema@.register_outcomes(project_name text, relation_name text, key_column text,
                                                         label_column text, time_column text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    rel oid;
BEGIN
    rel := pg_catalog.to_regclass(relation_name);
    IF rel IS NULL THEN
        RAISE EXCEPTION 'relation "%" does not exist', relation_name USING ERRCODE = '42P01';
    END IF;
    PERFORM pgmodels._outcomes_register(pgmodels._credential(), project_name, rel, key_column, label_column, time_column);
END
$$;
COMMENT ON FUNCTION @extschema@.register_outcomes(text, text, text, text, text) IS 'names the table or view where a project''s true labels arrive, later, by key (key, label and optional time column): rollouts are decided on them, read with the registering role''s rights; for the project''s owner';

-- What the report of a rollout needs, for the project's owner role itself when outcomes
-- are registered (they are read as it, and only as it): the rollout, the outcome source,
-- the answers' counts and agreement, and each key's latest answer on each side (champion,
-- candidate). Definer: the catalog is not readable by PUBLIC.
CREATE OR REPLACE FUNCTION pgmodels._rollout_evidence(credential text, rollout_id bigint)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    ro pgmodels.rollout_runs;
    proj pgmodels.projects;
    src pgmodels.outcome_sources;
    champ pgmodels.models;
    cand pgmodels.models;
    col text;
    regression boolean;
BEGIN
    SELECT r.* INTO ro FROM pgmodels.rollout_runs r WHERE r.id = rollout_id;
    IF ro.id IS NULL THEN
        RAISE EXCEPTION 'rollout % does not exist', coalesce(rollout_id::text, 'NULL') USING ERRCODE = '42704';
    END IF;
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.id = ro.project_id;
    PERFORM pgmodels._require_owner(caller, proj);
    SELECT o.* INTO src FROM pgmodels.outcome_sources o WHERE o.project_id = proj.id;
    IF src.project_id IS NOT NULL THEN
        IF caller <> src.owner_role THEN
            RAISE EXCEPTION 'the outcomes of project "%" are read as role "%" only', proj.name, src.owner_role::regrole
                USING ERRCODE = '42501',
                      DETAIL = 'Whatever code the outcome relation runs, it runs as the role that registered it.',
                      HINT = format('SET ROLE %s first (pg_cron runs the evaluation as it).', src.owner_role::regrole);
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = src.relation)
           OR src.relation::regclass::text <> src.relation_name THEN
            RAISE EXCEPTION 'relation "%" of project "%"''s outcomes no longer exists', src.relation_name, proj.name
                USING ERRCODE = '42P01', HINT = 'Name where the outcomes arrive again with register_outcomes().';
        END IF;
        FOREACH col IN ARRAY ARRAY[src.key_column, src.label_column, src.time_column] LOOP
            IF col IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = src.relation
                                                  AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped) THEN
                RAISE EXCEPTION 'column "%" of relation "%" no longer exists', col, src.relation_name
                    USING ERRCODE = '42703', HINT = 'Name the outcome columns again with register_outcomes().';
            END IF;
        END LOOP;
    END IF;
    SELECT m.* INTO champ FROM pgmodels.models m WHERE m.id = ro.champion_id;
    SELECT m.* INTO cand FROM pgmodels.models m WHERE m.id = ro.candidate_id;
    regression := champ.task = 'regression';
    RETURN jsonb_build_object(
        'id', ro.id, 'project', proj.name, 'mode', ro.mode, 'fraction', ro.fraction, 'status', ro.status,
        'rule', ro.rule, 'started_at', ro.started_at, 'task', champ.task, 'labels', champ.labels,
        'champion', jsonb_build_object('id', champ.id, 'version', champ.version),
        'candidate', jsonb_build_object('id', cand.id, 'version', cand.version),
        'outcomes', CASE WHEN src.project_id IS NOT NULL THEN jsonb_build_object(
            'relation', src.relation_name, 'key', src.key_column, 'label', src.label_column, 'time', src.time_column,
            'key_type', (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                          WHERE a.attrelid = src.relation AND a.attname = src.key_column)) END,
        'counts', (SELECT jsonb_build_object(
            'candidate', jsonb_build_object('answers', count(*) FILTER (WHERE a.role <> 'champion'),
                                            'errors', count(a.error) FILTER (WHERE a.role <> 'champion'),
                                            'latency_ms', avg(a.latency_ms) FILTER (WHERE a.role <> 'champion')),
            'champion', jsonb_build_object('answers', count(*) FILTER (WHERE a.role = 'champion'
                                                                       OR a.champion_prediction IS NOT NULL),
                                           'errors', 0,
                                           'latency_ms', avg(a.latency_ms) FILTER (WHERE a.role = 'champion')),
            'agreement', avg(CASE WHEN regression
                                  THEN (abs(a.prediction - a.champion_prediction)
                                        <= 0.05 * abs(a.champion_prediction) + 1e-9)::integer
                                  ELSE (a.prediction = a.champion_prediction)::integer END)
                         FILTER (WHERE a.role = 'shadow' AND a.error IS NULL))
            FROM pgmodels.rollout_predictions a WHERE a.rollout_id = ro.id),
        'latest', (SELECT jsonb_build_object('side', coalesce(jsonb_agg(l.side), '[]'),
                                             'key', coalesce(jsonb_agg(l.key), '[]'),
                                             'prediction', coalesce(jsonb_agg(l.prediction), '[]'))
                     FROM (SELECT DISTINCT ON (s.side, a.key) s.side, a.key, s.prediction
                             FROM pgmodels.rollout_predictions a,
                                  LATERAL (VALUES (CASE WHEN a.role = 'champion' THEN 'champion' ELSE 'candidate' END,
                                                   a.prediction, a.error IS NULL),
                                                  ('champion', a.champion_prediction, a.role = 'shadow')) s(side, prediction, ok)
                            WHERE a.rollout_id = ro.id AND a.key IS NOT NULL AND s.ok AND s.prediction IS NOT NULL
                            ORDER BY s.side, a.key, a.at DESC) l));
END
$$;
COMMENT ON FUNCTION pgmodels._rollout_evidence(text, bigint) IS 'internal: a rollout, its outcome source (checked to exist as registered), the counts of its recorded answers and the agreement in shadow, and each key''s latest answer by champion and candidate; for its project''s owner, and when outcomes are registered for the role that registered them only';

CREATE OR REPLACE FUNCTION pgmodels._rollout_purge(credential text, rollout_id bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ro pgmodels.rollout_runs := pgmodels._rollout_for_owner(pgmodels._verify_caller(credential), rollout_id);
    n bigint;
BEGIN
    DELETE FROM pgmodels.rollout_predictions a WHERE a.rollout_id = ro.id
       AND a.at < clock_timestamp() - make_interval(days => (ro.rule ->> 'retention_days')::float8::integer);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION pgmodels._rollout_purge(text, bigint) IS 'internal: deletes a rollout''s recorded answers older than its rule''s retention_days, for its project''s owner';

-- The cores run as the caller (PL/Python, not definers): they read the outcomes with the
-- caller's rights. Each returns its rows as jsonb (NULL with a pending error, which the
-- SQL wrapper raises in PostgreSQL's style).
CREATE OR REPLACE FUNCTION pgmodels._rollout_report(rollout_id bigint) RETURNS jsonb
LANGUAGE plpython3u VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.rollout.report import report_json; return report_json(rollout_id)
$$;
COMMENT ON FUNCTION pgmodels._rollout_report(bigint) IS 'internal: the core of rollout_report()';

CREATE OR REPLACE FUNCTION @extschema@.rollout_report(rollout_id bigint)
RETURNS TABLE (role text, model_id bigint, version integer, predictions bigint, outcomes bigint, metric text, value double precision, ci_low double precision, ci_high double precision, difference double precision, difference_low double precision, difference_high double precision, second_metric text, second_value double precision, agreement double precision, latency_ms double precision, errors bigint, error_rate double precision)
LANGUAGE sql VOLATILE
AS $$
    SELECT r.* FROM pg_catalog.jsonb_to_recordset(coalesce(pgmodels._rollout_report($1),
                                                           pgmodels._raise_pending(NULL::jsonb)) -> 'versions')
             AS r(role text, model_id bigint, version integer, predictions bigint, outcomes bigint, metric text, value double precision, ci_low double precision, ci_high double precision, difference double precision, difference_low double precision, difference_high double precision, second_metric text, second_value double precision, agreement double precision, latency_ms double precision, errors bigint, error_rate double precision)
$$;
COMMENT ON FUNCTION @extschema@.rollout_report(bigint) IS 'per version of a rollout (champion, then candidate): answers recorded, those joined to an outcome, the key metric (f1 or r2) with its interval (the rule''s confidence), the candidate''s difference from the champion with its interval, a second metric (accuracy or mae), agreement with the champion on shared keys (shadow), latency and errors; for the project''s owner';

CREATE OR REPLACE FUNCTION pgmodels._evaluate_rollout(rollout_id bigint) RETURNS jsonb
LANGUAGE plpython3u VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return None
from pgmodels.rollout.decide import evaluate; return evaluate(rollout_id)
$$;
COMMENT ON FUNCTION pgmodels._evaluate_rollout(bigint) IS 'internal: the core of evaluate_rollout()';

CREATE OR REPLACE FUNCTION @extschema@.evaluate_rollout(rollout_id bigint)
RETURNS TABLE (action text, automatic boolean, reason text, numbers jsonb)
LANGUAGE sql VOLATILE
AS $$
    SELECT r.* FROM pg_catalog.jsonb_to_record(coalesce(pgmodels._evaluate_rollout($1),
                                                        pgmodels._raise_pending(NULL::jsonb)))
             AS r(action text, automatic boolean, reason text, numbers jsonb)
$$;
COMMENT ON FUNCTION @extschema@.evaluate_rollout(bigint) IS 'applies a rollout''s rule to its report now: promote when the candidate beats the champion by the margin with the interval excluding zero after min_outcomes outcomes, abort when it is worse by the margin or fails more than max_error_rate of its answers, else wait (with auto false: recommends only); every evaluation is recorded (pgmodels.rollout_decisions), a decision notifies pgmodels_rollout; pg_cron runs it on the rollout''s schedule';

CREATE OR REPLACE VIEW pgmodels.rollouts WITH (security_barrier) AS
SELECT r.id, p.name AS project, r.champion_id, mc.version AS champion_version, r.candidate_id,
       md.version AS candidate_version, r.mode, r.fraction, r.status, r.rule, r.started_by, r.started_at, r.ended_at,
       r.decision AS last_decision, r.reason AS last_reason, r.decided_at,
       (SELECT h.numbers FROM pgmodels.rollout_history h WHERE h.rollout_id = r.id AND h.numbers ? 'versions'
         ORDER BY h.id DESC LIMIT 1) AS last_report
  FROM pgmodels.rollout_runs r
  JOIN pgmodels.projects p ON p.id = r.project_id
  JOIN pgmodels.models mc ON mc.id = r.champion_id
  JOIN pgmodels.models md ON md.id = r.candidate_id
 WHERE pgmodels._may(pgmodels._me(), p.id, 'use');
COMMENT ON VIEW pgmodels.rollouts IS 'one row per rollout of the projects the current role may use: champion and candidate, mode, fraction, status (active, promoted, aborted), started and ended, the last decision, why, and the numbers of the last evaluation';
GRANT SELECT ON pgmodels.rollouts TO PUBLIC;

CREATE OR REPLACE VIEW pgmodels.rollout_decisions WITH (security_barrier) AS
SELECT h.rollout_id, p.name AS project, h.at, h.action, h.automatic, h.reason, h.numbers, h.by_role
  FROM pgmodels.rollout_history h
  JOIN pgmodels.rollout_runs r ON r.id = h.rollout_id
  JOIN pgmodels.projects p ON p.id = r.project_id
 WHERE pgmodels._may(pgmodels._me(), p.id, 'use');
COMMENT ON VIEW pgmodels.rollout_decisions IS 'every start, change, evaluation and decision of the rollouts of projects the current role may use, with the numbers each rested on (the metric of both versions over time)';
GRANT SELECT ON pgmodels.rollout_decisions TO PUBLIC;

REVOKE EXECUTE ON FUNCTION
    pgmodels._rollout_report(bigint),
    pgmodels._evaluate_rollout(bigint),
    pgmodels._outcomes_register(text, text, oid, text, text, text),
    pgmodels._rollout_evidence(text, bigint),
    pgmodels._rollout_purge(text, bigint)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    -- run as the caller; what they read of the catalog comes through _rollout_evidence
    pgmodels._rollout_report(bigint),
    pgmodels._evaluate_rollout(bigint),
    -- each checks the caller's credential and that it owns the project
    pgmodels._outcomes_register(text, text, oid, text, text, text),
    pgmodels._rollout_evidence(text, bigint),
    pgmodels._rollout_purge(text, bigint)
TO PUBLIC;

-- migrations/0.2.0--0.3.0/epilogue.sql

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
