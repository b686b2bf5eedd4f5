#!/usr/bin/env bash
# Stage 80: the Swagger UI in a real browser (Debian's Chromium driven by the pinned
# playwright-core; no browser is downloaded).
#
# A fresh all-in-one binary (SQLite in a fresh working directory, a free port) is opened at
# `/`, which must redirect to `/docs/`; tests/browser/swagger.mjs then selects each of the four
# documents in the top bar, creates a user, deposits, places an order and reads the letter, all
# through "Try it out", and fails on any console error, failed or refused request, or request
# to another host. Screenshots of every page go to tests/artifacts/browser/. To refresh the
# committed picture of the orders page, run with SWAGGER_SCREENSHOT=docs/swagger-orders.png.
source "$(dirname "$0")/../lib.sh"

ensure_debs chromium
ensure_node_modules
build_release

export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
OUT="$ARTIFACTS/browser"
WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/browser-stage.XXXXXX")
SCREENSHOT="${SWAGGER_SCREENSHOT:-}"

cleanup() {
  stop_started
  rm -rf "$WORKDIR"
}
trap cleanup EXIT

rm -rf "$OUT"
mkdir -p "$OUT"
port=$(free_port)
base="http://127.0.0.1:$port"
log "all-in-one binary on $base (working directory $WORKDIR)"
start_bg "$OUT/order-system.log" \
  env -C "$WORKDIR" \
  -u DATABASE_URL -u USER_SERVICE_URL -u BILLING_SERVICE_URL -u NOTIFICATION_SERVICE_URL \
  BIND_ADDR="127.0.0.1:$port" RUST_LOG="${RUST_LOG:-info}" \
  "$BIN/order-system"
if ! wait_for_http "$base/health/ready" 60; then
  tail -n 30 "$OUT/order-system.log" >&2 || true
  exit 1
fi

log "Swagger UI in Chromium ($(/usr/bin/chromium --version 2>/dev/null | head -n1), playwright-core $(node -p "require('$REPO_ROOT/node_modules/playwright-core/package.json').version"))"
if ! node "$REPO_ROOT/tests/browser/swagger.mjs" "$base" "$OUT" ${SCREENSHOT:+"$SCREENSHOT"} 2>&1 | tee "$OUT/swagger.txt"; then
  echo "browser test failed: output tests/artifacts/browser/swagger.txt, screenshots and the binary's log beside it" >&2
  exit 1
fi
