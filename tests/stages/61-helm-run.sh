#!/usr/bin/env bash
# Stage 61: run the system the way the Helm chart configures it, on this machine.
#
# tests/helm/local_plan.py reads the rendered chart: each Deployment's command,
# environment and ports, the Secret behind DATABASE_URL, the Services behind the peer
# URLs, the probes, the Ingress and PostgreSQL's init script. Service names become
# 127.0.0.1 ports (free_port), the PostgreSQL Service becomes the local server
# (127.0.0.1:5432, trust auth), and the databases and roles are made fresh by the
# chart's own init script under a helmrun_ prefix. The four release binaries start
# with exactly the rendered environment (env -i), the probe paths must answer, the
# rendered Ingress rules route through tests/helm/ingress_proxy.py, and the Postman
# collection runs unchanged through it with newman. Everything started is stopped on
# exit, and the databases and roles are dropped.
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

COLLECTION="$REPO_ROOT/tests/postman/order-flow.postman_collection.json"
INGRESS_HOST=arch.homework

prepare_chart_run
cleanup() {
  local rc=$?
  stop_started
  drop_databases_and_roles
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

log "plan from the rendered chart"
plan_from_chart
cp "$WORK/rendered.yaml" "$ARTIFACTS/helm-run-rendered.yaml"

init_databases_like_the_chart
for svc in "${SERVICES[@]}"; do
  # The service's own role owns its database and may create tables there.
  url_var="DB_URL_${svc//-/_}"
  psql "${!url_var}" -v ON_ERROR_STOP=1 -qAt -c "CREATE TABLE helmrun_probe (id bigint); DROP TABLE helmrun_probe" >/dev/null
done
# A role cannot connect to another service's database.
first_url_var="DB_URL_${SERVICES[0]//-/_}"
first_url="${!first_url_var}"
first_db="${first_url##*/}"
for other_db in "${DATABASES[@]}"; do [ "$other_db" != "$first_db" ] && break; done
foreign_url="${first_url%/*}/$other_db"
if psql "$foreign_url" -qAt -c "SELECT 1" >/dev/null 2>&1; then
  echo "a service role could connect to another service's database ($other_db)" >&2
  exit 1
fi
echo "each role is confined to its own database"

log "start the four binaries with the rendered command and environment"
declare -A PID
for svc in "${SERVICES[@]}"; do
  env_var="ENV_${svc//-/_}[@]"
  envs=("${!env_var}")
  printf '  %s:' "$svc"; printf ' %s' "${envs[@]%%=*}"; printf '\n'
  start_bg "$ARTIFACTS/helm-run-$svc.log" env -i "${envs[@]}" "$BIN/${BINARY[$svc]}"
  PID[$svc]=${STARTED_PIDS[-1]}
done

log "probes (startup, liveness, readiness) and metrics on the real binaries"
for svc in "${SERVICES[@]}"; do
  probes_var="PROBES_${svc//-/_}[@]"
  for probe in "${!probes_var}"; do
    url=${probe#* }
    if ! wait_for_http "$url" 120; then
      echo "$svc: ${probe%% *} $url did not answer 200; log:" >&2
      tail -n 50 "$ARTIFACTS/helm-run-$svc.log" >&2
      exit 1
    fi
    echo "  $svc ${probe%% *} $url: 200"
  done
done
check_metrics_endpoints

start_ingress_stand_in "$ARTIFACTS/helm-run-ingress-proxy.log"

status() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
for docs in users billing orders notifications; do
  for path in "/docs/$docs/" "/docs/$docs/openapi.json"; do
    code=$(status "$BASE$path")
    [ "$code" = 200 ] || { echo "GET $path through the ingress: $code, expected 200" >&2; exit 1; }
  done
  echo "  GET /docs/$docs/ and /docs/$docs/openapi.json: 200"
done
for path in /internal/billing/accounts /internal/billing/accounts/1/withdraw /internal/notifications; do
  code=$(status -X POST -H 'Content-Type: application/json' -d '{}' "$BASE$path")
  [ "$code" = 404 ] || { echo "POST $path through the ingress: $code, expected 404 (never routed)" >&2; exit 1; }
  echo "  POST $path: 404 (not routed)"
done
for path in /health/live /health/ready /metrics; do
  code=$(status "$BASE$path")
  [ "$code" = 404 ] || { echo "GET $path through the ingress: $code, expected 404 (never routed)" >&2; exit 1; }
  echo "  GET $path: 404 (not routed)"
done

log "Postman collection through the ingress stand-in (twice: it must be repeatable)"
for run in 1 2; do
  echo "newman run $run"
  newman run "$COLLECTION" --env-var "baseUrl=$BASE" --reporters cli
done

log "SIGTERM: every service stops gracefully with exit code 0"
for svc in "${SERVICES[@]}"; do
  pid=${PID[$svc]}
  kill -TERM "$pid"
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$svc did not stop within 30 s of SIGTERM" >&2
    exit 1
  fi
  rc=0
  wait "$pid" || rc=$?
  [ "$rc" = 0 ] || { echo "$svc exited with $rc after SIGTERM" >&2; tail -n 20 "$ARTIFACTS/helm-run-$svc.log" >&2; exit 1; }
  echo "  $svc: exit 0"
done
echo "helm run: the chart's configuration works with the real binaries"
