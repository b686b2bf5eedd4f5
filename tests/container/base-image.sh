#!/usr/bin/env bash
# The Dockerfile's base image (debian:bookworm-slim) without a registry: made once with
# debootstrap from the apt mirror this machine already uses, imported into podman's
# storage and kept there as a cache. Does nothing when the image exists.
#
#   tests/container/base-image.sh [IMAGE [ALIAS ...]]
#     IMAGE  default localhost/debian:bookworm-slim
#     ALIAS  more names for it; default docker.io/library/debian:bookworm-slim, so that an
#            unchanged `FROM debian:bookworm-slim` resolves with --pull=never
#
# The mirror is read from /etc/apt/sources.list.d/debian.sources (deb822) or
# /etc/apt/sources.list: the URI of the entry that carries the suite. The image gets
# the host's deb822 sources for that mirror (suite, -updates, -security), as the official
# image has, so `apt-get install` in the Dockerfile sees the security updates too.
# Needs root, podman and debootstrap; CONTAINERS_CONF as for every podman call here.
set -euo pipefail

SUITE=bookworm
IMAGE=${1:-localhost/debian:$SUITE-slim}
shift || true
ALIASES=("$@")
[ $# -gt 0 ] || ALIASES=("docker.io/library/debian:$SUITE-slim")

tag_aliases() {
  local alias
  for alias in "${ALIASES[@]}"; do
    podman image exists "$alias" || podman tag "$IMAGE" "$alias"
  done
}

if podman image exists "$IMAGE"; then
  tag_aliases
  exit 0
fi

# One builder at a time; a second caller waits and finds the image.
exec 9>"/run/lock/order-system-base-image.lock"
flock 9
if podman image exists "$IMAGE"; then
  tag_aliases
  exit 0
fi

# The mirror: the first URI whose entry lists the suite itself (not -security/-updates).
mirror=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  mirror=$(awk -v suite="$SUITE" '
    BEGIN { RS = ""; FS = "\n" }
    {
      uris = ""; suites = ""; types = ""
      for (i = 1; i <= NF; i++) {
        if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[ \t]*/, "", uris) }
        if ($i ~ /^Suites:/) { suites = " " $i " "; sub(/^ Suites:/, "", suites) }
        if ($i ~ /^Types:/) { types = $i }
      }
      if (types ~ /(^|[ \t])deb([ \t]|$)/ && suites ~ ("[ \t]" suite "[ \t]")) { split(uris, u, /[ \t]+/); print u[1]; exit }
    }' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk -v suite="$SUITE" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i + 1) == suite) { print $i; exit } }' /etc/apt/sources.list)
fi
if [ -z "$mirror" ]; then
  echo "base-image: no apt source for $SUITE in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list" >&2
  exit 1
fi

rootfs=$(mktemp -d /var/tmp/base-image.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "base-image: debootstrap --variant=minbase $SUITE from $mirror" >&2
start=$(date +%s)
if ! debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1; then
  tail -n 30 "$rootfs.log" >&2
  rm -f "$rootfs.log"
  exit 1
fi
rm -f "$rootfs.log"

# Sources as in the official image (deb822, the host's entries for this mirror's suites).
rm -f "$rootfs/etc/apt/sources.list"
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  grep -v '^#' /etc/apt/sources.list.d/debian.sources >"$rootfs/etc/apt/sources.list.d/debian.sources"
else
  printf 'deb %s %s main\n' "$mirror" "$SUITE" >"$rootfs/etc/apt/sources.list"
fi
# Slim, like the official -slim image: no package lists, caches, docs, man pages or
# foreign locales; nothing of the host (hostname, resolv.conf, machine-id).
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
  "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/var/tmp/* \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
  "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/lintian/*
: >"$rootfs/etc/hostname"
: >"$rootfs/etc/resolv.conf"
: >"$rootfs/etc/machine-id"
mkdir -p "$rootfs/etc/dpkg/dpkg.cfg.d"
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
# As in the official -slim images: no docs, man pages or translations.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
printf 'APT::Install-Recommends "false";\n' >"$rootfs/etc/apt/apt.conf.d/docker-no-recommends"

tar -C "$rootfs" --numeric-owner -c . | podman import --quiet --change 'CMD ["bash"]' - "$IMAGE" >/dev/null
tag_aliases
echo "base-image: $IMAGE ($(podman image inspect --format '{{.Size}}' "$IMAGE") bytes) in $(( $(date +%s) - start )) s" >&2
