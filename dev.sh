#!/usr/bin/env bash
# The two commands a newcomer needs, on a fresh Debian 12 machine as root:
#
#   ./dev.sh demo   install everything, start the embedded cluster, train and serve a model
#   ./dev.sh test   install everything, then run the whole test suite against the cluster
#
# Everything else is the `pgmodels` tool in .pgmodels/venv/bin.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

install() { bash scripts/install.sh >/dev/null; }
pgm() { .pgmodels/venv/bin/pgmodels "$@"; }

case "${1:-}" in
  demo)
    install
    pgm db create >/dev/null
    pgm demo
    ;;
  test)
    shift
    install
    pgm db create >/dev/null
    port=${PGMODELS_PORT:-54329}
    echo "== SQL regression tests (pg_regress)"
    if ! PGHOST=$(cd .pgmodels && pwd -P)/run PGPORT=$port PGUSER=postgres \
         make -s -C extension installcheck; then
      cat extension/regression.diffs 2>/dev/null || true
      exit 1
    fi
    echo "== Python tests (pytest)"
    .pgmodels/venv/bin/python -m pytest "$@"
    ;;
  *)
    echo "usage: ./dev.sh demo | ./dev.sh test [pytest args]" >&2
    exit 2
    ;;
esac
