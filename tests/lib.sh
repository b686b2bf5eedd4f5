# Shared by the test stages: sourced, never run. Every helper here starts
# only what it needs and registers its own clean-up.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export REPO_ROOT
ARTIFACTS="$REPO_ROOT/tests/artifacts"
mkdir -p "$ARTIFACTS"

log() { printf '\n==> %s\n' "$*" >&2; }

# apt packages, installed once and only when missing.
ensure_debs() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Node packages from the committed lock file.
ensure_node_modules() {
  if [ ! -x "$REPO_ROOT/node_modules/.bin/newman" ] || [ "$REPO_ROOT/package-lock.json" -nt "$REPO_ROOT/node_modules/.package-lock.json" ]; then
    log "npm ci"
    (cd "$REPO_ROOT" && npm ci --no-audit --no-fund >/dev/null)
  fi
  export PATH="$REPO_ROOT/node_modules/.bin:$PATH"
}

# Python tools pinned in tests/requirements.txt, in a venv inside the clone.
ensure_python_tools() {
  local venv="$REPO_ROOT/.venv"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  if ! cmp -s "$REPO_ROOT/tests/requirements.txt" "$venv/.installed-requirements" 2>/dev/null; then
    log "pip install -r tests/requirements.txt"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$REPO_ROOT/tests/requirements.txt"
    cp "$REPO_ROOT/tests/requirements.txt" "$venv/.installed-requirements"
  fi
  export PATH="$venv/bin:$PATH"
}

# The local PostgreSQL (trust auth on 127.0.0.1:5432), started if it is down.
ensure_postgres() {
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  pg_isready -h 127.0.0.1 -p 5432
}

# A fresh PostgreSQL database; prints its URL.
fresh_pg_database() {
  local name="$1"
  PGOPTIONS="-c client_min_messages=warning" psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" >/dev/null
  psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE \"$name\"" >/dev/null
  echo "postgres://postgres@127.0.0.1:5432/$name"
}

drop_pg_database() {
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null 2>&1 || true
}

# A TCP port nobody listens on right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits until URL answers 200, up to $2 seconds (default 60).
wait_for_http() {
  local url="$1" limit="${2:-60}"
  for _ in $(seq 1 $((limit * 5))); do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "timed out waiting for $url" >&2
  return 1
}

# The release binaries, built once per run.
build_release() {
  if [ -z "${RELEASE_BUILT:-}" ]; then
    log "cargo build --release --workspace --bins"
    (cd "$REPO_ROOT" && cargo build --release --locked --workspace --bins -q)
    export RELEASE_BUILT=1
  fi
}
BIN="$REPO_ROOT/target/release"

# Background processes started by a stage; killed (TERM, then KILL) on exit.
STARTED_PIDS=()
stop_started() {
  local pid
  for pid in "${STARTED_PIDS[@]:-}"; do
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${STARTED_PIDS[@]:-}"; do
    [ -n "$pid" ] || continue
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  STARTED_PIDS=()
}
start_bg() {
  local logfile="$1"; shift
  "$@" >"$logfile" 2>&1 &
  STARTED_PIDS+=("$!")
}

# A stage's scratch space: WORKDIR (a fresh temp dir) and DATABASES (names the
# stage appends to), both removed on exit with everything start_bg started.
# What stages 61 and 65 need before they run the chart's plan: the tools, PostgreSQL,
# the release binaries and the Postman collection ($COLLECTION); then a fresh WORK and the
# empty DATABASES and ROLES that drop_databases_and_roles reads.
prepare_chart_run() {
  ensure_python_tools
  ensure_node_modules
  ensure_postgres
  build_release
  require_service_binaries
  [ -f "$COLLECTION" ] || { echo "missing $COLLECTION" >&2; exit 1; }
  WORK=$(mktemp -d)
  DATABASES=()
  ROLES=()
}

# plan_from_chart [local_plan.py options]: renders the chart into $WORK as a loopback
# topology (tests/helm/local_plan.py: a port per replica, HAProxy per Service, nginx for
# the Ingress, the local PostgreSQL) and sources the plan (plan.sh). The pools are sized
# for eight processes sharing the local server's 100 connections with everyone else.
plan_from_chart() {
  local pools='{"userService":{"databasePoolSize":3},"billingService":{"databasePoolSize":3},"orderService":{"databasePoolSize":3},"notificationService":{"databasePoolSize":3}}'
  python "$REPO_ROOT/tests/helm/local_plan.py" --work "$WORK" --pg-host 127.0.0.1 --pg-port 5432 --values "$pools" "$@"
  # shellcheck source=/dev/null
  source "$WORK/plan.sh"
}

# start_replica REPLICA LOGFILE: one replica of the plan (e.g. order-service-1) with exactly
# its rendered environment; its PID goes to REPLICA_PID[REPLICA]. Starting it again after it
# stopped reuses its port, as a restarted pod keeps its Service.
declare -gA REPLICA_PID
start_replica() {
  local replica="$1" env_var="ENV_${1//-/_}[@]"
  start_bg "$2" env -i "${!env_var}" "$BIN/${BINARY[${REPLICA_SERVICE[$replica]}]}"
  REPLICA_PID[$replica]=${STARTED_PIDS[-1]}
}

# wait_replica_ready REPLICA [seconds]: its startup, liveness and readiness probes answer 200.
wait_replica_ready() {
  local probe probes_var="PROBES_${1//-/_}[@]"
  for probe in "${!probes_var}"; do
    wait_for_http "${probe#* }" "${2:-60}" || return 1
  done
}

# start_chart_topology LOGPREFIX: every replica of the plan, HAProxy in front of them
# (the Services) and nginx from the Ingress in front of that; sets BASE. Logs go to
# $ARTIFACTS/LOGPREFIX-<replica|haproxy|nginx>.log.
start_chart_topology() {
  local replica
  log "start ${#REPLICAS[@]} replicas with the rendered command and environment"
  for replica in "${REPLICAS[@]}"; do start_replica "$replica" "$ARTIFACTS/$1-$replica.log"; done
  for replica in "${REPLICAS[@]}"; do
    wait_replica_ready "$replica" 120 || { tail -n 40 "$ARTIFACTS/$1-$replica.log" >&2; return 1; }
    echo "  $replica (pid ${REPLICA_PID[$replica]}): probes answer 200"
  done
  start_haproxy "$ARTIFACTS/$1-haproxy.log"
  start_nginx_from_ingress "$ARTIFACTS/$1-nginx.log"
}

# haproxy_servers_up: how many replicas HAProxy has in rotation now.
haproxy_servers_up() {
  curl -fsS "${HAPROXY_STATS_URL};csv" | awk -F, 'NR > 1 && $2 != "FRONTEND" && $2 != "BACKEND" && $18 == "UP"' | wc -l
}

# start_haproxy LOGFILE: the Services (haproxy.cfg of the plan); waits until every
# replica is in rotation.
start_haproxy() {
  ensure_debs haproxy
  log "HAProxy: one listener per Service over its replicas, readiness-checked"
  haproxy -c -q -f "$WORK/haproxy.cfg"
  start_bg "$1" haproxy -f "$WORK/haproxy.cfg" -db
  for _ in $(seq 1 100); do
    [ "$(haproxy_servers_up 2>/dev/null || echo 0)" -eq "${#REPLICAS[@]}" ] && return 0
    sleep 0.1
  done
  echo "HAProxy: only $(haproxy_servers_up) of ${#REPLICAS[@]} replicas in rotation after 10 s" >&2
  return 1
}

# start_nginx_from_ingress LOGFILE: nginx with the config rendered from the chart's
# Ingress (nginx/nginx.conf of the plan); sets BASE to its URL and waits until it routes.
start_nginx_from_ingress() {
  ensure_debs nginx-light
  log "nginx for $INGRESS_HOST from the rendered Ingress"
  nginx -q -t -p "$WORK/nginx" -c nginx.conf -g 'daemon off;'
  start_bg "$1" nginx -p "$WORK/nginx" -c nginx.conf -g 'daemon off;'
  BASE=$(cat "$WORK/nginx/base-url")
  wait_for_http "$BASE/docs/users/openapi.json" 30
}

# The four service binaries must have been built by build_release.
require_service_binaries() {
  local binary
  for binary in user-service billing-service order-service notification-service; do
    [ -x "$BIN/$binary" ] || { echo "missing release binary $BIN/$binary" >&2; exit 1; }
  done
}

# psql as the local superuser.
pg() { psql -h 127.0.0.1 -p 5432 -U postgres -v ON_ERROR_STOP=1 -qAt "$@"; }

# Drops what a stage created: the databases in DATABASES and the roles in ROLES.
drop_databases_and_roles() {
  local db role
  for db in "${DATABASES[@]:-}"; do [ -n "$db" ] && drop_pg_database "$db"; done
  for role in "${ROLES[@]:-}"; do
    [ -n "$role" ] && pg -d postgres -c "DROP ROLE IF EXISTS \"$role\"" >/dev/null 2>&1 || true
  done
}

# Creates the databases and roles with the chart's own init script, as
# tests/helm/local_plan.py rendered it into $WORK (plan.sh gives DATABASES,
# SERVICES, INIT_ENV and each service's DB_URL_<service>), then checks that
# every service connects with a role of its own that is not a superuser.
init_databases_like_the_chart() {
  local svc url_var got
  log "databases and roles by the chart's init script: ${DATABASES[*]}"
  drop_databases_and_roles
  env -i PATH="$PATH" PGHOST=127.0.0.1 PGPORT=5432 "${INIT_ENV[@]}" bash "$WORK/init-databases.sh"
  for svc in "${SERVICES[@]}"; do
    url_var="DB_URL_${svc//-/_}"
    got=$(psql "${!url_var}" -v ON_ERROR_STOP=1 -qAt -c "SELECT current_user || ' ' || current_database() || ' ' || rolsuper::text FROM pg_roles WHERE rolname = current_user")
    echo "  $svc: connects as $got"
    case "$got" in *" false") ;; *) echo "$svc: role must not be a superuser ($got)" >&2; exit 1 ;; esac
  done
}

# Every replica whose plan.sh entry has a METRICS_URL_<replica> answers Prometheus text there.
check_metrics_endpoints() {
  local replica metrics_var
  for replica in "${REPLICAS[@]}"; do
    metrics_var="METRICS_URL_${replica//-/_}"
    [ -n "${!metrics_var:-}" ] || continue
    curl -fsS "${!metrics_var}" | grep -q '^# TYPE ' || { echo "$replica: ${!metrics_var} is not Prometheus text" >&2; exit 1; }
    echo "  $replica metrics ${!metrics_var}: 200"
  done
}

stage_scratch() {
  WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/$1-stage.XXXXXX")
  DATABASES=()
  trap cleanup_stage_scratch EXIT
}
cleanup_stage_scratch() {
  stop_started
  local db
  for db in "${DATABASES[@]:-}"; do
    [ -n "$db" ] && drop_pg_database "$db"
  done
  rm -rf "$WORKDIR"
}
