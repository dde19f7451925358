#!/usr/bin/env bash
# Installs what building and running the Docker image needs on Debian 12, from Debian's
# archive, idempotently: podman (with runc) and debootstrap, which makes the base image on
# machines that cannot pull from Docker Hub (docker/base-image.sh). scripts/install.sh runs
# it in dev mode; tests/test_docker.py uses what it installs, and podman-compose from PyPI
# (the test extra: Debian's 1.0.3 cannot run a service on the host's network).
#
# On a machine without systemd or with cgroup v1 (CI's), point podman at
# docker/containers.conf: CONTAINERS_CONF=docker/containers.conf podman ...
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

packages=(podman runc debootstrap)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
[ "$(id -u)" = 0 ] || { echo "container-tools.sh: needs root to install ${missing[*]}" >&2; exit 1; }
printf '[install] apt-get install %s\n' "${missing[*]}" >&2
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
