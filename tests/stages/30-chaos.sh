#!/usr/bin/env bash
# Stage 30: the seeded chaos soak (testkit/src/bin/chaos.rs). The four service binaries on
# fresh PostgreSQL databases under a random mix of orders, deposits, sign-ups and cancels while random
# services are SIGKILLed, SIGSTOPped and SIGTERMed and restarted; then every request without a
# definite answer is repeated with its key or reference and every invariant is checked.
#
# Two soaks: a fixed seed (the same faults and requests every run), then a random one (new
# ground each run). A failure prints the seed and the command that replays it. Output:
# tests/artifacts/chaos-{fixed,random}.txt, service logs in tests/artifacts/chaos-*-logs/.
#
# Environment: CHAOS_STAGE_SEED (the fixed seed), CHAOS_STAGE_SECONDS (60 per soak).
source "$(dirname "$0")/../lib.sh"

ensure_debs libpq-dev libsqlite3-dev pkg-config
ensure_postgres
build_release
require_service_binaries
[ -x "$BIN/chaos" ] || { echo "missing $BIN/chaos (cargo build --release --workspace --bins)" >&2; exit 1; }

FIXED_SEED=${CHAOS_STAGE_SEED:-4}
SOAK_SECONDS=${CHAOS_STAGE_SECONDS:-60}
RANDOM_SEED=$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')
# The soak stops its services and drops its databases itself, also on SIGTERM (sent by the
# stage's clean-up when the stage is interrupted).
stage_scratch chaos

failures=()
# run_soak NAME SEED: one soak, its output shown and kept as an artifact.
run_soak() {
  local name=$1 seed=$2 rc=0
  log "chaos soak ($name seed $seed, ${SOAK_SECONDS}s)"
  rm -rf "$ARTIFACTS/chaos-$name-logs"
  CHAOS_SEED=$seed CHAOS_SECONDS=$SOAK_SECONDS CHAOS_LOG_DIR="$ARTIFACTS/chaos-$name-logs" \
    "$BIN/chaos" > >(tee "$ARTIFACTS/chaos-$name.txt") 2>&1 &
  STARTED_PIDS+=("$!")
  wait "$!" || rc=$?
  if [ "$rc" -ne 0 ]; then
    failures+=("$name seed $seed (exit $rc): CHAOS_SEED=$seed CHAOS_SECONDS=$SOAK_SECONDS $BIN/chaos")
  fi
}
run_soak fixed "$FIXED_SEED"
run_soak random "$RANDOM_SEED"

if [ ${#failures[@]} -gt 0 ]; then
  printf 'chaos soak failed: %s\n' "${failures[@]}" >&2
  echo "output: tests/artifacts/chaos-*.txt; service logs: tests/artifacts/chaos-*-logs/" >&2
  exit 1
fi
log "chaos soak passed: seeds $FIXED_SEED and $RANDOM_SEED, ${SOAK_SECONDS}s each"
