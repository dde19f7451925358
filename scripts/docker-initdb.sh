#!/usr/bin/env bash
# Run once by the postgres image's entrypoint on a new data directory.
set -euo pipefail
echo "cron.database_name = '${POSTGRES_DB:-postgres}'" >> "$PGDATA/postgresql.conf"
/opt/pgmodels/venv/bin/pgmodels install --dsn "postgresql:///${POSTGRES_DB:-postgres}?user=${POSTGRES_USER:-postgres}&host=/var/run/postgresql"
