#!/usr/bin/env bash
# Stage 62: rolling restarts under load behind HAProxy (testkit/src/bin/rolling.rs). Two
# replicas of every service binary on fresh PostgreSQL databases behind HAProxy (one listener
# per service, readiness-checked, no retries), POST /orders with Idempotency-Keys from signed-in
# users for at least a minute while every replica is restarted in turn with SIGTERM, then one
# order-service and one billing-service replica SIGKILLed. With the chart's SHUTDOWN_DRAIN_MS no
# request may fail before the SIGKILLs, every SIGTERM exits 0 and every invariant holds.
#
# Then the same with SHUTDOWN_DRAIN_MS=0 (the listener closes right after SIGTERM, as before
# the drain): the "before" figure, reported and never judged. ROLLING_STAGE_BEFORE=0 skips it.
# Output: tests/artifacts/rolling-{after,before}.txt, logs in tests/artifacts/rolling-*-logs/.
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

ensure_debs haproxy libpq-dev libsqlite3-dev pkg-config
ensure_postgres
build_release
require_service_binaries
# The binary stops its processes and drops its databases itself, also on SIGTERM (sent by the
# stage's clean-up when the stage is interrupted).
stage_scratch rolling

# rolling MODE: one run, its output shown and kept; its exit status is the function's.
rolling() {
  rm -rf "$ARTIFACTS/rolling-$1-logs"
  ROLLING_MODE=$1 ROLLING_LOG_DIR="$ARTIFACTS/rolling-$1-logs" "$BIN/rolling" > >(tee "$ARTIFACTS/rolling-$1.txt") 2>&1 &
  STARTED_PIDS+=("$!")
  wait "$!"
}

log "rolling restarts with the chart's drain"
rolling after
if [ "${ROLLING_STAGE_BEFORE:-1}" != 0 ]; then
  log "the same without the drain (SHUTDOWN_DRAIN_MS=0): the before figure, not judged"
  rc=0
  rolling before || rc=$?
  echo "run without the drain: exit $rc"
fi
