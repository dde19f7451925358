#!/usr/bin/env bash
# A Debian 12 base image made from Debian's archive, for machines that cannot pull
# debian:bookworm-slim from Docker Hub: debootstrap --variant=minbase, trimmed the way
# the slim image is (no documentation, manual pages or translations), imported into the
# container engine. The root file system is cached as a tarball, so a second run only
# imports it.
#
#   docker/base-image.sh                 prints the image's name (localhost/pgmodels-base:bookworm)
#   podman build --build-arg BASE_IMAGE=$(docker/base-image.sh) -t pgmodels .
#
# Environment: ENGINE (podman), PGMODELS_BASE_IMAGE (the name), DEBIAN_MIRROR
# (http://deb.debian.org/debian), PGMODELS_CACHE (~/.cache/pgmodels: the tarball).
# Needs root (debootstrap) the first time.
set -euo pipefail

engine=${ENGINE:-podman}
name=${PGMODELS_BASE_IMAGE:-localhost/pgmodels-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${PGMODELS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgmodels}
tarball=$cache/debian-bookworm-minbase.tar

log() { printf '[base-image] %s\n' "$*" >&2; }

if "$engine" image inspect "$name" >/dev/null 2>&1; then
  echo "$name"
  exit 0
fi

if [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null || { echo "base-image.sh: needs debootstrap (scripts/container-tools.sh installs it)" >&2; exit 1; }
  mkdir -p "$cache"
  work=$(mktemp -d "$cache/rootfs.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  log "debootstrap --variant=minbase bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
  root=$work/root
  # as debian:bookworm-slim: packages installed later leave out documentation and
  # translations too (copyright files stay)
  cat > "$root/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
  # and dpkg skips fsync (a build is thrown away if it fails), apt fetches no translations
  echo force-unsafe-io > "$root/etc/dpkg/dpkg.cfg.d/unsafe-io"
  echo 'Acquire::Languages "none";' > "$root/etc/apt/apt.conf.d/no-languages"
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root"/usr/share/{man,info,groff,lintian,linda,locale}/* "$root"/var/cache/apt/archives/*.deb \
         "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* "$root"/var/log/* 2>/dev/null || true
  # the slim image's sources: the release, its updates and security updates
  rm -f "$root/etc/apt/sources.list"
  cat > "$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  : > "$root/etc/hostname"
  rm -f "$root/etc/resolv.conf" "$root/etc/machine-id"
  tar --numeric-owner -C "$root" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  log "cached $tarball ($(du -h "$tarball" | cut -f1))"
fi

log "import $tarball as $name"
"$engine" import --quiet --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  "$tarball" "$name" >/dev/null
echo "$name"
