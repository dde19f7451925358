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
