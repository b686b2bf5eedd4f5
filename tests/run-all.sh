#!/usr/bin/env bash
# The one command that runs every test of the project (see README.md).
# It installs what it needs, starts what it needs and stops what it started.
# Usage: tests/run-all.sh [stage-name-substring ...]   (no argument: all stages)
set -euo pipefail
cd "$(dirname "$0")/.."

stages=()
for stage in tests/stages/*.sh; do
  if [ $# -eq 0 ]; then stages+=("$stage"); continue; fi
  for want in "$@"; do
    case "$stage" in *"$want"*) stages+=("$stage"); break ;; esac
  done
done

passed=0
failed=0
failures=()
export RELEASE_BUILT=""
for stage in "${stages[@]}"; do
  name=$(basename "$stage" .sh)
  printf '\n######## stage %s ########\n' "$name"
  start=$(date +%s)
  if bash "$stage"; then
    passed=$((passed + 1))
    printf '######## stage %s passed in %ss\n' "$name" $(( $(date +%s) - start ))
  else
    failed=$((failed + 1))
    failures+=("$name")
    printf '######## stage %s FAILED after %ss\n' "$name" $(( $(date +%s) - start ))
  fi
done

printf '\n'
[ ${#failures[@]} -gt 0 ] && printf 'failed stages: %s\n' "${failures[*]}"
echo "stages: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
