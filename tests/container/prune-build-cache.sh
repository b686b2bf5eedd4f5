#!/usr/bin/env bash
# Removes the podman images that earlier builds of this repository's Dockerfile left
# behind (untagged stage results and layers no tag needs any more), keeping every image
# the build whose log is given used, so its cached apt layers are reused next time.
# Images of anything else are left alone: a candidate must be untagged, unused by this
# build, and carry one of this Dockerfile's steps in its history.
#
#   tests/container/prune-build-cache.sh BUILD_LOG     (the output of `podman build`)
set -euo pipefail
log_file=$1
# `--> 1cbb9c6ffa4` after each committed step; COMMIT lines name the final image.
keep=$(awk '$1 == "-->" { print substr($2, 1, 11) }' "$log_file" | sort -u)
[ -n "$keep" ] || { echo "prune-build-cache: no image ids in $log_file" >&2; exit 1; }
ours='strip --strip-debug /out/|useradd --uid 10001 |org.opencontainers.image.title="order-system"| in /out/ *$'

removed=0
freed=0
for _ in $(seq 1 20); do
  changed=0
  for id in $(podman images -a -q --filter dangling=true | sort -u); do
    grep -qx "${id:0:11}" <<<"$keep" && continue
    podman history --no-trunc --format '{{.CreatedBy}}' "$id" 2>/dev/null | grep -qE "$ours" || continue
    size=$(podman image inspect --format '{{.Size}}' "$id" 2>/dev/null || echo 0)
    if podman rmi "$id" >/dev/null 2>&1; then
      removed=$((removed + 1)); freed=$((freed + size)); changed=1
    fi
  done
  [ "$changed" = 1 ] || break
done
[ "$removed" = 0 ] || echo "removed $removed stale image(s) of earlier builds (up to $((freed / 1000000)) MB)"
