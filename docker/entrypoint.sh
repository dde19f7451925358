#!/usr/bin/env bash
# The image's entrypoint: one image, every role.
#
#   (no command), postgres [ARG...], -c ...   the database server, with the official postgres
#                                             image's conventions (POSTGRES_PASSWORD,
#                                             POSTGRES_USER, POSTGRES_DB, PGDATA, PGPORT,
#                                             /docker-entrypoint-initdb.d)
#   serve [ARG...]                            pgmodels serve (PGMODELS_DSN, PGMODELS_HOST,
#                                             PGMODELS_PORT, PGMODELS_GRPC_PORT)
#   stream [work] [CONSUMER...] [ARG...]      pgmodels stream work (PGMODELS_DSN)
#   pgmodels ARG...                           any pgmodels command
#   anything else                             run as given
#
# Every role drops root before it starts: the server runs as "postgres", the pgmodels
# commands as "pgmodels". The database's first start makes the cluster, the database,
# pg_cron and pgmodels in it; every later start of a newer image updates pgmodels in each
# database that has it (docker/dbinit.sh).
set -Eeuo pipefail

source /usr/local/lib/pgmodels/dbinit.sh

# usage: file_env VAR [DEFAULT]: VAR, or the contents of the file VAR_FILE names (secrets)
file_env() {
  local var=$1 file_var=${1}_FILE default=${2:-}
  if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
    echo "error: both $var and $file_var are set (but are exclusive)" >&2
    exit 1
  fi
  local value=$default
  if [ -n "${!var:-}" ]; then
    value=${!var}
  elif [ -n "${!file_var:-}" ]; then
    value=$(<"${!file_var}")
  fi
  export "$var"="$value"
  unset "$file_var"
}

# usage: drop_to USER ARG...: run this script again as USER (setpriv execs: PID 1 stays the role)
drop_to() {
  local user=$1
  shift
  export HOME
  HOME=$(getent passwd "$user" | cut -d: -f6)
  exec setpriv --reuid="$user" --regid="$user" --init-groups "${BASH_SOURCE[0]}" "$@"
}

# a postgres option that prints something and exits: no setup for it
wants_help() {
  local arg
  for arg; do
    case $arg in -'?'|--help|--describe-config|-V|--version) return 0 ;; esac
  done
  return 1
}

database() {
  file_env POSTGRES_PASSWORD
  file_env POSTGRES_USER postgres
  file_env POSTGRES_DB "$POSTGRES_USER"
  file_env POSTGRES_INITDB_ARGS
  export POSTGRES_HOST_AUTH_METHOD=${POSTGRES_HOST_AUTH_METHOD:-}
  if [ "$(id -u)" = 0 ]; then
    # best effort: a read-only or foreign volume is reported below, as postgres, with a reason
    mkdir -p "$PGDATA" 2>/dev/null || true
    find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' + 2>/dev/null || true
    chmod 700 "$PGDATA" 2>/dev/null || true
    mkdir -p /var/run/postgresql && chown postgres:postgres /var/run/postgresql && chmod 3775 /var/run/postgresql
    drop_to postgres "$@"
  fi
  check_data_directory
  if [ -s "$PGDATA/PG_VERSION" ]; then
    printf '\nPostgreSQL Database directory appears to contain a database; Skipping initialization\n\n'
    update_extensions "$@"
  else
    init_database "$@"
  fi
  exec "$@"
}

# the client roles: the DSN from the environment (pgmodels serve and stream work read
# PGMODELS_DSN themselves, so a password in it stays out of the process list), and the
# database waited for
client_dsn() {
  file_env PGMODELS_DSN
  if [ -z "$PGMODELS_DSN" ]; then
    cat >&2 <<'EOF'
error: PGMODELS_DSN is not set
DETAIL: pgmodels serve and pgmodels stream work connect to a database that runs elsewhere.
HINT: Set PGMODELS_DSN to a libpq URL, e.g. -e PGMODELS_DSN=postgresql://postgres:secret@db:5432/postgres (libpq's PGPASSWORD and other variables apply too).
EOF
    exit 1
  fi
  wait_for_database "${PGMODELS_WAIT_TIMEOUT:-120}"
}

# usage: wait_for_database SECONDS: retry until $PGMODELS_DSN answers with pgmodels in it,
# saying why not each time; fail after SECONDS
wait_for_database() {
  /opt/pgmodels/venv/bin/python - "$1" <<'EOF'
import os, sys, time
import psycopg

dsn, timeout = os.environ["PGMODELS_DSN"], float(sys.argv[1])
deadline = time.monotonic() + timeout
while True:
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            conn.execute("SELECT 'pgmodels._api_token_role(text)'::regprocedure")
        break
    except psycopg.errors.UndefinedFunction:
        why = "the database has no pgmodels extension (yet)"
    except psycopg.Error as e:
        why = str(e).strip().splitlines()[0]
    left = deadline - time.monotonic()
    if left <= 0:
        print(f"error: cannot reach the database after {timeout:g} s: {why}\n"
              "HINT: Check PGMODELS_DSN (host, port, user, password, database) and that the database "
              "runs; PGMODELS_WAIT_TIMEOUT sets how long to wait.", file=sys.stderr, flush=True)
        sys.exit(1)
    print(f"pgmodels: waiting for the database: {why} (retrying, {left:.0f} s left)", file=sys.stderr, flush=True)
    time.sleep(min(2.0, max(left, 0.1)))
EOF
}

main() {
  # a first argument that looks like an option is the server's
  if [ "${1:0:1}" = - ]; then
    set -- postgres "$@"
  fi
  case $1 in
    postgres)
      if wants_help "$@"; then
        exec "$@"
      fi
      database "$@"
      ;;
    serve)
      [ "$(id -u)" != 0 ] || drop_to pgmodels "$@"
      shift
      client_dsn
      exec pgmodels serve --host "${PGMODELS_HOST:-0.0.0.0}" \
        --port "${PGMODELS_PORT:-8080}" --grpc-port "${PGMODELS_GRPC_PORT:-8081}" "$@"
      ;;
    stream)
      [ "$(id -u)" != 0 ] || drop_to pgmodels "$@"
      shift
      [ "${1:-}" != work ] || shift
      client_dsn
      exec pgmodels stream work "$@"
      ;;
    pgmodels)
      [ "$(id -u)" != 0 ] || drop_to pgmodels "$@"
      exec "$@"
      ;;
  esac
  exec "$@"
}

main "${@:-postgres}"
