#!/usr/bin/env bash
# Stage 61: run the system the way the Helm chart configures it, on this machine.
#
# tests/helm/local_plan.py reads the rendered chart: each Deployment's replicas, command,
# environment, ports and mounted Secrets, the Secrets behind secretKeyRefs, the Services
# behind the peer URLs, the probes, the Ingress and PostgreSQL's init script. Every replica
# (2 per service by default) gets a loopback port, each Service is an HAProxy listener over
# its replicas checked on the readiness probe (as kube-proxy follows readiness), the
# Ingress is nginx configured from its rendered rules, and the PostgreSQL Service is the
# local server (127.0.0.1:5432, trust auth) with fresh databases and roles made by the
# chart's own init script under a helmrun_ prefix. The release binaries start with exactly
# the rendered environment (env -i), the probe paths must answer, and the Postman
# collection runs unchanged through nginx -> HAProxy -> the replicas, with every replica
# serving some of it. Everything started is stopped on exit, and the databases and roles
# are dropped.
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

start_chart_topology helm-run
check_metrics_endpoints

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

log "Postman collection through nginx and HAProxy (twice: it must be repeatable)"
for run in 1 2; do
  echo "newman run $run"
  newman run "$COLLECTION" --env-var "baseUrl=$BASE" --reporters cli
done
# Round robin: every replica answered some of those requests (its access log says so).
for replica in "${REPLICAS[@]}"; do
  served=$(grep -c 'request_id=[^-].*service_kit::request_id' "$ARTIFACTS/helm-run-$replica.log" || true)
  [ "$served" -gt 0 ] || { echo "$replica served no request through HAProxy" >&2; exit 1; }
  echo "  $replica: $served requests"
done

log "SIGTERM to every replica at once: each drains and exits 0 within the grace period"
grace=$(python -c 'import sys, yaml; print(next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])' "$WORK/rendered.yaml")
start=$(date +%s%N)
for replica in "${REPLICAS[@]}"; do kill -TERM "${REPLICA_PID[$replica]}"; done
for replica in "${REPLICAS[@]}"; do
  pid=${REPLICA_PID[$replica]}
  for _ in $(seq 1 $((grace * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { echo "$replica still running $grace s (the grace period) after SIGTERM" >&2; exit 1; }
  rc=0
  wait "$pid" || rc=$?
  [ "$rc" = 0 ] || { echo "$replica exited with $rc after SIGTERM" >&2; tail -n 20 "$ARTIFACTS/helm-run-$replica.log" >&2; exit 1; }
  echo "  $replica: exit 0, $(( ($(date +%s%N) - start) / 1000000 )) ms after SIGTERM"
done
echo "helm run: the chart's configuration works with the real binaries"
