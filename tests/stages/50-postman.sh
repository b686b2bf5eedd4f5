#!/usr/bin/env bash
# Stage 50: the Postman collection (tests/postman/order-flow.postman_collection.json) under newman.
#
# Run 1, the local run: the all-in-one binary (SQLite under ./data of a fresh working directory);
#        the collection runs twice in a row against it, proving it can be re-run on one deployment.
# Run 2, the cluster topology: the four service binaries as separate processes, each with its own
#        fresh PostgreSQL database, behind nginx routing by the chart's own rendered Ingress
#        (tests/helm/local_plan.py); the same collection, only baseUrl differs.
# newman's output goes to tests/artifacts/postman-*.txt (and JUnit XML beside it).
source "$(dirname "$0")/../lib.sh"

ensure_node_modules
ensure_debs openssl
ensure_python_tools
build_release

COLLECTION="$REPO_ROOT/tests/postman/order-flow.postman_collection.json"
stage_scratch postman
DB_PREFIX="postman_$$"

# wait_ready URL PID LOGFILE [any]: waits until URL answers 200 (with "any": answers at all);
# fails early when the process behind it has died.
wait_ready() {
  local url="$1" pid="$2" logfile="$3" mode="${4:-ok}" code
  for _ in $(seq 1 300); do
    code=$(curl -sS -o /dev/null -w '%{http_code}' "$url" 2>/dev/null || true)
    if [ "$code" = 200 ] || { [ "$mode" = any ] && [ -n "$code" ] && [ "$code" != 000 ]; }; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "the process behind $url exited; its log ($logfile):" >&2
      tail -n 30 "$logfile" >&2 || true
      return 1
    fi
    sleep 0.2
  done
  echo "timed out waiting for $url; log ($logfile):" >&2
  tail -n 30 "$logfile" >&2 || true
  return 1
}

# run_newman NAME BASE_URL: one run of the collection; output shown and kept as an artifact.
run_newman() {
  local name="$1" base_url="$2"
  log "newman run ($name) against $base_url"
  newman run "$COLLECTION" \
    --env-var "baseUrl=$base_url" \
    --timeout-request 30000 \
    --color off \
    --reporters cli,junit \
    --reporter-junit-export "$ARTIFACTS/postman-$name.xml" \
    2>&1 | tee "$ARTIFACTS/postman-$name.txt"
}

failures=()

# ---------------------------------------------------------------- run 1: all-in-one, SQLite
log "run 1: all-in-one binary (SQLite in a fresh working directory)"
port=$(free_port)
mkdir -p "$WORKDIR/all-in-one"
start_bg "$ARTIFACTS/postman-all-in-one.log" \
  env -C "$WORKDIR/all-in-one" \
  -u DATABASE_URL -u USER_SERVICE_URL -u BILLING_SERVICE_URL -u NOTIFICATION_SERVICE_URL \
  BIND_ADDR="127.0.0.1:$port" RUST_LOG="${RUST_LOG:-info}" \
  "$BIN/order-system"
wait_ready "http://127.0.0.1:$port/health/ready" "${STARTED_PIDS[-1]}" "$ARTIFACTS/postman-all-in-one.log"
run_newman all-in-one-1 "http://127.0.0.1:$port" || failures+=("all-in-one, first run")
run_newman all-in-one-2 "http://127.0.0.1:$port" || failures+=("all-in-one, second run")
stop_started

# ---------------------------------------------------------------- run 2: four services, PostgreSQL
log "run 2: four service binaries with PostgreSQL behind nginx"
ensure_postgres
declare -A PORTS URLS DBURLS
for svc in user billing order notification; do
  PORTS[$svc]=$(free_port)
  URLS[$svc]="http://127.0.0.1:${PORTS[$svc]}"
  DATABASES+=("${DB_PREFIX}_$svc")
  DBURLS[$svc]=$(fresh_pg_database "${DB_PREFIX}_$svc")
done

# The secrets the chart generates: the services' shared credential and
# user-service's signing key (Ed25519, PKCS#8 PEM).
CREDENTIAL=$(head -c 36 /dev/urandom | base64 | tr -d '/+=' | head -c 48)
SIGNING_KEY="$WORKDIR/signing-key.pem"
(umask 077 && openssl genpkey -algorithm ed25519 -out "$SIGNING_KEY")

# start_service SVC [VAR=value ...]: one service binary, waited for until ready.
start_service() {
  local svc="$1"; shift
  local logfile="$ARTIFACTS/postman-$svc-service.log"
  start_bg "$logfile" \
    env -C "$WORKDIR" \
    -u USER_SERVICE_URL -u BILLING_SERVICE_URL -u NOTIFICATION_SERVICE_URL \
    BIND_ADDR="127.0.0.1:${PORTS[$svc]}" DATABASE_URL="${DBURLS[$svc]}" RUST_LOG="${RUST_LOG:-info}" \
    INTERNAL_API_TOKEN="$CREDENTIAL" \
    "$@" "$BIN/$svc-service"
  wait_ready "${URLS[$svc]}/health/ready" "${STARTED_PIDS[-1]}" "$logfile"
}
start_service notification USER_SERVICE_URL="${URLS[user]}"
start_service billing USER_SERVICE_URL="${URLS[user]}"
start_service user BILLING_SERVICE_URL="${URLS[billing]}" AUTH_SIGNING_KEY_FILE="$SIGNING_KEY"
start_service order \
  USER_SERVICE_URL="${URLS[user]}" \
  BILLING_SERVICE_URL="${URLS[billing]}" \
  NOTIFICATION_SERVICE_URL="${URLS[notification]}"

WORK="$WORKDIR/plan"
INGRESS_HOST=arch.homework
python "$REPO_ROOT/tests/helm/local_plan.py" --work "$WORK" --service-at "user-service=127.0.0.1:${PORTS[user]}" \
  --service-at "billing-service=127.0.0.1:${PORTS[billing]}" --service-at "order-service=127.0.0.1:${PORTS[order]}" \
  --service-at "notification-service=127.0.0.1:${PORTS[notification]}"
start_nginx_from_ingress "$ARTIFACTS/postman-nginx.log"
# Like the Ingress, nginx must not expose the internal API (the collection must not need it).
code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
  -d '{"user_id": 1}' "$BASE/internal/billing/accounts")
if [ "$code" != 404 ]; then
  echo "nginx answered $code for /internal/billing/accounts; expected 404" >&2
  exit 1
fi

run_newman services "$BASE" || failures+=("four services behind nginx")
stop_started

if [ ${#failures[@]} -gt 0 ]; then
  printf 'newman failed: %s\n' "${failures[@]}" >&2
  echo "newman output: tests/artifacts/postman-*.txt, service logs: tests/artifacts/postman-*.log" >&2
  exit 1
fi
log "the Postman collection passed: twice against the all-in-one binary, once against the four services"
