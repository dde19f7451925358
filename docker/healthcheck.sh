#!/usr/bin/env bash
# The image's HEALTHCHECK, for whichever role the container runs (read from PID 1's
# command line): the database server accepts connections; pgmodels serve answers
# /v2/health/ready; a stream worker runs. During the database's first start PID 1 is
# still the entrypoint, so the container is not healthy until the real server runs.
set -euo pipefail
if [ "$(id -u)" = 0 ]; then  # nothing here needs root
  exec setpriv --reuid=pgmodels --regid=pgmodels --init-groups "${BASH_SOURCE[0]}" "$@"
fi

mapfile -d '' -t argv </proc/1/cmdline
# usage: option NAME...: the value of the last of these options on PID 1's command line
option() {
  local i value=""
  for ((i = 0; i < ${#argv[@]}; i++)); do
    for name; do
      if [ "${argv[i]}" = "$name" ] && [ $((i + 1)) -lt ${#argv[@]} ]; then
        value=${argv[i + 1]}
      elif [[ ${argv[i]} == "$name="* ]]; then
        value=${argv[i]#"$name="}
      fi
    done
  done
  printf '%s' "$value"
}

case ${argv[0]##*/} in
  postgres)
    port=$(option -p)
    for ((i = 0; i < ${#argv[@]}; i++)); do  # -c port=N
      [[ ${argv[i]} != port=* ]] || port=${argv[i]#port=}
    done
    exec pg_isready -q -h /var/run/postgresql -p "${port:-${PGPORT:-5432}}"
    ;;
  python*)
    case " ${argv[*]} " in
      *" serve "*)
        host=$(option --host)
        case $host in ''|0.0.0.0) host=127.0.0.1 ;; ::) host='[::1]' ;; *:*) host="[$host]" ;; esac
        exec /opt/pgmodels/venv/bin/python -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=4)' "http://$host:$(option --port)/v2/health/ready" 2>/dev/null
        ;;
      *" stream "*) exit 0 ;;
    esac
    ;;
esac
exit 1
