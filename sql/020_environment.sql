-- The server-side Python environment.
--
-- PL/Python runs the server's own interpreter (python3.11 on Debian 12). The packages
-- pgmodels imports live in a virtual environment built from that same interpreter and
-- named by the setting pgmodels.venv. _activate() puts that environment on sys.path
-- once per backend. It is the one PL/Python body that is not a one-line call into the
-- pgmodels package, because it is what makes the package importable.

CREATE FUNCTION pgmodels._activate(strict boolean DEFAULT true) RETURNS text
LANGUAGE plpython3u PARALLEL SAFE
AS $$
import os, sys
if GD.get('pgmodels.active'):
    return None
def fail(msg, detail, hint, sqlstate='55000'):
    if strict:
        plpy.error(msg, detail=detail, hint=hint, sqlstate=sqlstate)
    return msg + ': ' + detail
here = '%d.%d' % sys.version_info[:2]
server_python = os.path.join(sys.base_prefix, 'bin', 'python' + here)
make_hint = ('Run "pgmodels install --dsn <url>" with the pgmodels tool installed in a '
             'virtual environment built by %s, or run scripts/install.sh from the pgmodels '
             'source tree.' % server_python)
venv = plpy.execute("SELECT pg_catalog.current_setting('pgmodels.venv', true) AS v")[0]['v']
if not venv:
    return fail('pgmodels.venv is not set',
                'pgmodels imports its Python packages from a virtual environment named by the setting pgmodels.venv.',
                make_hint)
cfg = os.path.join(venv, 'pyvenv.cfg')
try:
    with open(cfg) as f:
        lines = dict(l.split('=', 1) for l in f.read().splitlines() if '=' in l)
except OSError as e:
    return fail('pgmodels.venv "%s" is not a readable virtual environment' % venv,
                'Reading %s failed: %s.' % (cfg, e.strerror), make_hint)
built = {k.strip(): v.strip() for k, v in lines.items()}.get('version', '')
if '.'.join(built.split('.')[:2]) != here:
    return fail('pgmodels.venv "%s" was built for another Python' % venv,
                'It was built with Python %s; this server runs Python %s.' % (built or 'unknown', sys.version.split()[0]),
                make_hint)
site_dir = os.path.join(venv, 'lib', 'python' + here, 'site-packages')
import site
before = list(sys.path)
site.addsitedir(site_dir)
sys.path[:] = [p for p in sys.path if p not in before] + before
try:
    import pgmodels
except Exception as e:
    sys.path[:] = before
    return fail('the pgmodels Python package cannot be imported from pgmodels.venv "%s"' % venv,
                'Importing it failed with %s: %s.' % (type(e).__name__, e), make_hint)
ext = plpy.execute("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pgmodels'")
if ext and ext[0]['extversion'] != pgmodels.__version__:
    sys.path[:] = before
    for name in [m for m in sys.modules if m == 'pgmodels' or m.startswith('pgmodels.')]:
        del sys.modules[name]
    return fail('pgmodels Python package %s does not match the extension version %s' % (pgmodels.__version__, ext[0]['extversion']),
                'The package in %s and the SQL objects of the extension come from different releases.' % venv,
                'Run "ALTER EXTENSION pgmodels UPDATE" or install the matching package into the virtual environment.')
GD['pgmodels.active'] = True
return None
$$;
COMMENT ON FUNCTION pgmodels._activate(boolean) IS 'internal: puts the virtual environment named by pgmodels.venv on the server''s sys.path once per session; strict raises, otherwise returns the problem';

CREATE FUNCTION pgmodels.doctor() RETURNS TABLE (item text, value text, ok boolean)
LANGUAGE plpython3u
AS $$
problem = plpy.execute("SELECT pgmodels._activate(false) AS p")[0]['p']
import sys
if problem: return [('server python', sys.version.split()[0], True), ('pgmodels.venv', problem, False)]
from pgmodels.doctor import report; return report()
$$;
COMMENT ON FUNCTION pgmodels.doctor() IS 'reports the server''s Python, the virtual environment in use, each package''s version and whether pg_cron is loaded';
