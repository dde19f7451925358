#!/usr/bin/env bash
# compose.yaml's database, first start: an application role, APP_USER (default app) with
# APP_PASSWORD, owning a schema of its name (its tables go there), and granted what an
# administrator grants: training and importing, batch jobs, streams and consumers,
# monitors. The stream worker logs in as it: a consumer is processed by its owner only.
set -euo pipefail
if [ -z "${APP_PASSWORD:-}" ]; then
  echo "$0: APP_PASSWORD is not set: no application role made" >&2
  exit 0
fi
psql -X -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v user="${APP_USER:-app}" -v password="$APP_PASSWORD" <<'SQL'
CREATE ROLE :"user" LOGIN PASSWORD :'password';
CREATE SCHEMA :"user" AUTHORIZATION :"user";
-- every signature of each of these functions of pgmodels
SELECT format('GRANT EXECUTE ON FUNCTION %s TO %I', p.oid::regprocedure, :'user')
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pgmodels'
 WHERE p.proname IN ('train', 'import_onnx', 'create_batch_job', 'alter_batch_job', 'create_stream',
                     'add_consumer', 'monitor')
\gexec
SQL
