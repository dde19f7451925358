#!/usr/bin/env bash
# Installs what pgmodels needs, idempotently, on Debian 12 or the official (Debian-based)
# postgres image: PostgreSQL 15 with plpython3u and pg_cron, a virtual environment built
# from the server's own Python with the pgmodels package in it, and the extension files.
#
#   scripts/install.sh          developer/embedded: home in ./.pgmodels, test extras too
#   scripts/install.sh system   a server install (the Dockerfile): venv in /opt/pgmodels/venv
#   scripts/install.sh runtime  only the packages a server runs pgmodels with, no build tools
#                               (the Dockerfile's final stage; it copies in a system install)
#   ... --packages              (after the mode) only the mode's system packages, then stop
#
# Prints the virtual environment's path on its last line (dev and system).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=${1:-dev}
PACKAGES_ONLY=$([ "${2:-}" = --packages ] && echo 1 || true)
PGVER=${PGVER:-15}
export DEBIAN_FRONTEND=noninteractive

log() { printf '[install] %s\n' "$*" >&2; }

# 1. system packages ---------------------------------------------------------------
# (libgomp1: LightGBM's OpenMP runtime, which its wheel does not bundle; the build tools
# are what the venv and `make install` need: PGXS, make, a C compiler for the one C
# library (extension/src/native.c), python3-venv)
packages=(postgresql-$PGVER postgresql-plpython3-$PGVER postgresql-$PGVER-cron python3 ca-certificates libgomp1)
[ "$MODE" = runtime ] || packages+=(postgresql-server-dev-$PGVER make gcc libc6-dev python3-venv git)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "install.sh: needs root to install ${missing[*]}" >&2; exit 1; }
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ "$MODE" = runtime ] || [ -n "$PACKAGES_ONLY" ] && exit 0
PG_CONFIG=/usr/lib/postgresql/$PGVER/bin/pg_config

# 2. the server's Python: the interpreter plpython3.so links against ----------------
libpython=$(ldd "$($PG_CONFIG --pkglibdir)/plpython3.so" | sed -n 's/.*libpython\(3\.[0-9]*\)\.so.*/\1/p' | head -n1)
SERVER_PYTHON=/usr/bin/python$libpython
[ -x "$SERVER_PYTHON" ] || { echo "install.sh: plpython3 links Python $libpython, but $SERVER_PYTHON is missing" >&2; exit 1; }

# 3. where the files live -------------------------------------------------------------
if [ "$MODE" = system ]; then
  VENV=${PGMODELS_VENV:-/opt/pgmodels/venv}
  EXTRAS="[server]"
else
  # The embedded cluster's home is ./.pgmodels. The server runs as "postgres", which must
  # be able to reach it; when the checkout sits where it cannot (under /root, say), the
  # home goes to /var/lib/pgmodels and ./.pgmodels links there.
  HOME_DIR=$ROOT/.pgmodels
  if [ ! -e "$HOME_DIR" ]; then
    if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$ROOT"; then
      real=/var/lib/pgmodels/$(basename "$ROOT")-$(printf '%s' "$ROOT" | sha256sum | cut -c1-8)
      mkdir -p "$real"; chmod 755 /var/lib/pgmodels "$real"
      ln -s "$real" "$HOME_DIR"
      log "home $HOME_DIR -> $real (postgres cannot reach $ROOT)"
    else
      mkdir -p "$HOME_DIR"
    fi
  fi
  VENV=$(cd "$HOME_DIR" && pwd -P)/venv
  EXTRAS="[server,test]"
fi

# 4. the virtual environment ----------------------------------------------------------
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != tuple(map(int, "'"$libpython"'".split("."))))'; then
  log "virtual environment $VENV from $SERVER_PYTHON"
  rm -rf "$VENV"
  umask 022
  "$SERVER_PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip setuptools >/dev/null
fi
umask 022
log "pip install pgmodels$EXTRAS into $VENV"
"$VENV/bin/pip" install -q "$ROOT$EXTRAS"
# the package itself always follows the source tree, even at an unchanged version
"$VENV/bin/pip" install -q --no-deps --force-reinstall --no-build-isolation "$ROOT"
# the edge device runtime (its own package, edge/python; the server signs bundles with it)
"$VENV/bin/pip" install -q --no-deps --force-reinstall --no-build-isolation "$ROOT/edge/python"
chmod -R a+rX "$VENV"

# the edge runtimes' tests: Node.js with onnxruntime-node and -web, and headless Chromium
# (onnxruntime-node's install script fetches GPU binaries from outside npm: skipped, the
# CPU ones are in the package)
if [ "$MODE" != system ]; then
  edge=()
  command -v node >/dev/null && command -v npm >/dev/null || edge+=(nodejs npm)
  command -v chromium >/dev/null || edge+=(chromium)
  if [ ${#edge[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "install.sh: needs root to install ${edge[*]}" >&2; exit 1; }
    log "apt-get install ${edge[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${edge[@]}" >/dev/null
  fi
  if [ ! -d "$ROOT/edge/js/node_modules/onnxruntime-web" ] || [ "$ROOT/edge/js/package.json" -nt "$ROOT/edge/js/node_modules" ]; then
    log "npm install (edge/js)"
    (cd "$ROOT/edge/js" && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund --loglevel=error >/dev/null)
    touch "$ROOT/edge/js/node_modules"
  fi
fi

# the scaling tests: PgBouncer (Debian's package) in front of the embedded cluster
if [ "$MODE" != system ] && ! dpkg-query -W -f='${Status}' pgbouncer 2>/dev/null | grep -q 'install ok installed'; then
  [ "$(id -u)" = 0 ] || { echo "install.sh: needs root to install pgbouncer" >&2; exit 1; }
  log "apt-get install pgbouncer"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends pgbouncer >/dev/null
fi

# the Docker image's test: podman and debootstrap (Debian's packages)
[ "$MODE" = system ] || bash "$ROOT/scripts/container-tools.sh"

# 5. the extension files ----------------------------------------------------------------
log "make install (PGXS)"
make -s -C "$ROOT/extension" PG_CONFIG=$PG_CONFIG install >/dev/null
# the companion extension pgmodels_pgml (PostgresML's pgml schema over pgmodels)
make -s -C "$ROOT/extension/pgml" PG_CONFIG=$PG_CONFIG install >/dev/null

# 6. pg_cron, for schedules (system) -----------------------------------------------------
# A schedule needs pg_cron preloaded, keeping its jobs in the database pgmodels is in. An
# existing server's configuration and restarts are its administrator's: for each cluster
# of this version that does not preload pg_cron, the exact steps are printed (to stderr;
# the last line of stdout stays the venv). pg_cron runs jobs in background workers, which
# need no password (a stock server asks one of every TCP connection, and peer
# authentication on the socket admits only the postgres role).
cron_steps() {
  command -v pg_lsclusters >/dev/null || return 0
  local ver name port status got preload source set_preload
  while read -r ver name port status _; do
    [ "$ver" = "$PGVER" ] || continue
    # what the server runs with (and where it comes from), else what its file says
    got=
    [ "${status%%,*}" != online ] || got=$(runuser -u postgres -- psql -XAtq -p "$port" -d postgres -c \
      "SELECT setting || '|' || coalesce(sourcefile, '') FROM pg_settings WHERE name = 'shared_preload_libraries'" \
      2>/dev/null) || got=
    if [ -n "$got" ]; then
      preload=${got%%|*} source=${got#*|}
    else
      preload=$(pg_conftool -s "$ver" "$name" show shared_preload_libraries 2>/dev/null) || preload=
      source=
    fi
    preload=${preload// /}
    case ",$preload," in *,pg_cron,*) continue ;; esac
    set_preload="pg_conftool $ver $name set shared_preload_libraries '${preload:+$preload,}pg_cron'"
    # a value ALTER SYSTEM wrote wins over postgresql.conf: change it there
    [ "${source##*/}" != postgresql.auto.conf ] \
      || set_preload="runuser -u postgres -- psql -p $port -c \"ALTER SYSTEM SET shared_preload_libraries = '${preload:+$preload,}pg_cron'\""
    log "pg_cron is installed, but cluster $ver/$name (port $port) does not load it: batch jobs and monitors"
    log "cannot have a schedule there yet. To schedule in database \$DB (the one pgmodels goes into), as root:"
    log "  DB=mydb"
    log "  $set_preload"
    log "  pg_conftool $ver $name set cron.database_name \"\$DB\""
    log "  pg_conftool $ver $name set cron.use_background_workers on"
    log "  pg_ctlcluster $ver $name restart    # a restart: shared_preload_libraries is read at start only"
    log "  runuser -u postgres -- psql -p $port -d \"\$DB\" -c 'CREATE EXTENSION IF NOT EXISTS pg_cron'"
  done < <(pg_lsclusters -h 2>/dev/null)
}
[ "$MODE" != system ] || cron_steps || true

echo "$VENV"
