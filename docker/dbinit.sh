# The database role's first start and its updates; sourced by docker/entrypoint.sh, run
# as the postgres user.
#
# First start (an empty $PGDATA): initdb, a password for every TCP connection (the local
# socket, inside the container only, trusts), pg_cron's database set to POSTGRES_DB,
# POSTGRES_DB created with pg_cron and pgmodels in it, then /docker-entrypoint-initdb.d.
# Later starts of a newer image: ALTER EXTENSION ... UPDATE in each database that has an
# older pgmodels (PGMODELS_UPDATE=off: say what to run instead). Both run on a temporary
# server that listens on the socket only, so no client sees a half-made database.

PORT=${PGPORT:-5432}
SOCKET_DIR=/var/run/postgresql
IMAGE_VERSION=$(sed -n "s/^default_version = '\(.*\)'$/\1/p" /usr/share/postgresql/15/extension/pgmodels.control)
# the pgmodels version of the image that last started on this data directory
STAMP=$PGDATA/pgmodels_image_version

# usage: fail MESSAGE [DETAIL [HINT]]: PostgreSQL's error shape, and exit 1
fail() {
  printf 'error: %s\n' "$1" >&2
  [ -z "${2:-}" ] || printf 'DETAIL: %s\n' "$2" >&2
  [ -z "${3:-}" ] || printf 'HINT: %s\n' "$3" >&2
  exit 1
}

check_data_directory() {
  local out
  if ! out=$(mkdir -p "$PGDATA" 2>&1) || ! out=$(mktemp "$PGDATA/.pgmodels-write-test.XXXXXX" 2>&1); then
    fail "data directory \"$PGDATA\" is not writable by user \"$(id -un 2>/dev/null || echo "?")\" (uid $(id -u))" \
         "${out//$'\n'/ }" "Mount a writable volume there (-v pgdata:$PGDATA), or a directory that uid $(id -u) owns."
  fi
  rm -f "$out"
}

# the official postgres image's checks and message, word for word
verify_minimum_env() {
  if [ "${#POSTGRES_PASSWORD}" -ge 100 ]; then
    printf '\nWARNING: The supplied POSTGRES_PASSWORD is 100+ characters.\n\n' >&2
  fi
  if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
    cat >&2 <<'EOE'
Error: Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD to a non-empty value for the
       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".

       You may also use "POSTGRES_HOST_AUTH_METHOD=trust" to allow all
       connections without a password. This is *not* recommended.

       See PostgreSQL documentation about "trust":
       https://www.postgresql.org/docs/current/auth-trust.html
EOE
    exit 1
  fi
  if [ "$POSTGRES_HOST_AUTH_METHOD" = trust ]; then
    echo 'WARNING: POSTGRES_HOST_AUTH_METHOD has been set to "trust": anyone who can reach the port is a superuser.' >&2
  fi
}

psql_su() {
  PGHOST=$SOCKET_DIR PGPORT=$PORT PGUSER=$POSTGRES_USER psql -X -q -v ON_ERROR_STOP=1 --no-password "$@"
}

# usage: temp_start postgres [ARG...]: the server's own arguments, on the socket only
temp_start() {
  shift
  pg_ctl -D "$PGDATA" -w -t 300 -o "$(printf '%q ' "$@" -c listen_addresses= -p "$PORT")" start
}

temp_stop() {
  pg_ctl -D "$PGDATA" -m fast -w -t 300 stop
}

init_database() {
  verify_minimum_env
  ls /docker-entrypoint-initdb.d/ >/dev/null
  local auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256} extra=()
  read -ra extra <<<"$POSTGRES_INITDB_ARGS"
  # --auth-host: unlike the official image, loopback connections need the password too
  # (containers on the host's network share its loopback)
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
         --auth-local=trust --auth-host="$auth" "${extra[@]}"
  printf '\n# docker/dbinit.sh: connections from anywhere, with the password\nhost all all all %s\n' "$auth" \
    >> "$PGDATA/pg_hba.conf"
  printf "\n# docker/dbinit.sh: pg_cron keeps its jobs in the image's database (POSTGRES_DB)\ncron.database_name = '%s'\n" \
    "${POSTGRES_DB//\'/\'\'}" >> "$PGDATA/postgresql.conf"

  temp_start "$@"
  if [ -z "$(psql_su -d postgres -At -v db="$POSTGRES_DB" <<<"SELECT 1 FROM pg_database WHERE datname = :'db'")" ]; then
    psql_su -d postgres -v db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  PGDATABASE=$POSTGRES_DB psql_su -c 'CREATE EXTENSION IF NOT EXISTS pg_cron'
  PGHOST=$SOCKET_DIR PGPORT=$PORT PGUSER=$POSTGRES_USER PGDATABASE=$POSTGRES_DB pgmodels install --dsn ''
  run_init_files
  temp_stop
  echo "$IMAGE_VERSION" > "$STAMP"
  printf '\nPostgreSQL init process complete; ready for start up.\n\n'
}

# /docker-entrypoint-initdb.d, in name order: *.sh run (sourced when not executable),
# *.sql, *.sql.gz and *.sql.xz go to psql in POSTGRES_DB
run_init_files() {
  local f
  export PGPORT=$PORT
  psql=(psql_su -d "$POSTGRES_DB")
  for f in /docker-entrypoint-initdb.d/*; do
    [ -e "$f" ] || continue
    case $f in
      *.sh)
        if [ -x "$f" ]; then
          echo "$0: running $f"
          "$f"
        else
          echo "$0: sourcing $f"
          # shellcheck disable=SC1090
          . "$f"
        fi
        ;;
      *.sql) echo "$0: running $f"; "${psql[@]}" -f "$f" ;;
      *.sql.gz) echo "$0: running $f"; gunzip -c "$f" | "${psql[@]}" ;;
      *.sql.xz) echo "$0: running $f"; xzcat "$f" | "${psql[@]}" ;;
      *) echo "$0: ignoring $f" ;;
    esac
  done
}

# A newer image on an older volume: every database with an older pgmodels (or
# pgmodels_pgml) is updated, each in its own transaction, or, with PGMODELS_UPDATE=off,
# left as it is with the command to run. Only once per image version (the stamp).
update_extensions() {
  local stamp="" db ext from to out pending="" dbs rows
  [ ! -r "$STAMP" ] || stamp=$(<"$STAMP")
  [ "$stamp" != "$IMAGE_VERSION" ] || return 0
  temp_start "$@"
  dbs=$(psql_su -d postgres -At -c "SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname" 2>&1) \
    || { temp_stop >/dev/null || true; fail "could not list the databases to update pgmodels in" "${dbs//$'\n'/ }" \
           "POSTGRES_USER must name the superuser the data directory was made with."; }
  while IFS= read -r db; do
    rows=$(PGDATABASE=$db psql_su -At -c "
        SELECT e.extname, e.extversion, a.default_version
          FROM pg_extension e JOIN pg_available_extensions a ON a.name = e.extname
         WHERE e.extname IN ('pgmodels', 'pgmodels_pgml') AND e.extversion <> a.default_version
         ORDER BY e.extname = 'pgmodels' DESC" 2>&1) \
      || { temp_stop >/dev/null || true; fail "could not read the extensions of database \"$db\"" "${rows//$'\n'/ }"; }
    while IFS='|' read -r ext from to; do
      [ -n "$ext" ] || continue
      if [ "${PGMODELS_UPDATE:-auto}" = off ]; then
        echo "pgmodels: database \"$db\" has $ext $from, this image $to; not updated (PGMODELS_UPDATE=off)." \
             "In that database, run: ALTER EXTENSION $ext UPDATE;" >&2
        pending=1
      elif out=$(PGDATABASE=$db psql_su -c "ALTER EXTENSION $ext UPDATE" 2>&1); then
        echo "pgmodels: database \"$db\": ALTER EXTENSION $ext UPDATE ($from -> $to)"
      else
        temp_stop >/dev/null || true
        fail "could not update $ext from $from to $to in database \"$db\"" "${out//$'\n'/ }" \
             "Nothing changed in that database (the update is one transaction). To start the server without updating, set PGMODELS_UPDATE=off; then, in that database, run: ALTER EXTENSION $ext UPDATE;"
      fi
    done <<<"$rows"
  done <<<"$dbs"
  temp_stop
  [ -n "$pending" ] || echo "$IMAGE_VERSION" > "$STAMP"
}
