# shellcheck shell=bash disable=SC2034
# Shared by bench/run.sh and bench/profile.sh: settings, clean-up traps,
# starting the topologies, measuring, checking. Sourced, never run.
set -Eeuo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)
BIN="${BENCH_BIN_DIR:-$REPO_ROOT/target/release}"

SECONDS_PER_LEVEL=${BENCH_SECONDS:-15}
LEVELS=${BENCH_LEVELS:-"1 8 32 64"}
CEILING_SECONDS=${BENCH_CEILING_SECONDS:-$SECONDS_PER_LEVEL}
TOPOLOGIES=${BENCH_TOPOLOGIES:-"sqlite postgres"}
USERS=${BENCH_USERS:-200}
PACED=${BENCH_PACED:-1}
GRACE_SECONDS=${BENCH_GRACE_SECONDS:-45}
WRK_THREADS=${BENCH_WRK_THREADS:-1}
SERVICE_LOG=${BENCH_RUST_LOG:-info}
RECOVERY_MS=${BENCH_RECOVERY_INTERVAL_MS:-1000}
PUBLISH=${BENCH_PUBLISH:-1}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
# libpq's sslmode for the services and pgbench alike. "disable" by default,
# as in the cluster: the chart's PostgreSQL (the official image) offers no
# TLS, while Debian's server here does, and libpq's own default ("prefer")
# would then spend about a fifth of the CPU on loopback TLS. An empty value
# leaves libpq's default.
BENCH_PG_SSLMODE=${BENCH_PG_SSLMODE-disable}
PG_URL_QUERY=${BENCH_PG_SSLMODE:+?sslmode=$BENCH_PG_SSLMODE}
if [ -n "$BENCH_PG_SSLMODE" ]; then export PGSSLMODE=$BENCH_PG_SSLMODE; fi

RUN_STAMP=$(date -u +%Y%m%dT%H%M%SZ)
STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
T0=$(date +%s)
DB_PREFIX="bench_$(date +%s)_$$"
COMMAND="bench/run.sh${*:+ $*}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench.XXXXXX")

log() { printf '[bench %s +%ss] %s\n' "$(date +%H:%M:%S)" $(( $(date +%s) - T0 )) "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# ---------------------------------------------------------------- clean-up
PIDS=()      # every process started in the background, until it is reaped
PG_DBS=()    # every database created
track() { PIDS+=("$1"); }
untrack() {
  local p keep=()
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

# Stops one started process: SIGTERM, then SIGKILL after $2 seconds (10).
# Leaves its exit status in STOP_RC.
stop_pid() {
  local pid=$1 patience=${2:-10}
  STOP_RC=0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((patience * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || STOP_RC=$?
  untrack "$pid"
}

drop_db() {
  psql -X -q -d postgres -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null 2>&1 || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [ ${#PIDS[@]} -gt 0 ]; then
    log "stopping ${#PIDS[@]} process(es) still running"
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null
      wait "$pid" 2>/dev/null
    done
  fi
  for db in "${PG_DBS[@]}"; do drop_db "$db"; done
  if [ "${BENCH_KEEP_WORK:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
    log "work files kept in $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# Runs a command in the background (so the traps can stop it) and waits for it.
run_tracked() {
  local pid rc=0
  "$@" &
  pid=$!
  track "$pid"
  wait "$pid" || rc=$?
  untrack "$pid"
  return "$rc"
}

# ------------------------------------------------------------------- tools
# "command:package" pairs: the package is installed when the command is missing.
ensure_commands() {
  local missing=() pair
  for pair in "$@"; do command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

ensure_venv() {
  local venv="$BENCH_DIR/.venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  if ! cmp -s "$BENCH_DIR/requirements.txt" "$venv/.installed-requirements" 2>/dev/null; then
    log "pip install -r bench/requirements.txt"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$BENCH_DIR/requirements.txt"
    cp "$BENCH_DIR/requirements.txt" "$venv/.installed-requirements"
  fi
  PY="$venv/bin/python"
}

ensure_postgres() {
  if ! pg_isready -q 2>/dev/null; then
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
    for _ in $(seq 1 30); do pg_isready -q && break; sleep 1; done
  fi
  pg_isready -q || die "PostgreSQL is not reachable at $PGHOST:$PGPORT"
}

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_ready() {
  local url=$1 pid=$2
  for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "$url/health/ready" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || die "the process for $url exited during start-up"
    sleep 0.1
  done
  die "$url did not become ready in 30 s"
}

fresh_db() {
  drop_db "$1"
  psql -X -q -d postgres -c "CREATE DATABASE \"$1\"" >/dev/null
  PG_DBS+=("$1")
}

# The secrets the chart generates, made once per run in the work directory
# (mode 0600): the services' shared credential (INTERNAL_API_TOKEN) and
# user-service's signing key (Ed25519, PKCS#8 PEM). Sets CREDENTIAL and
# SIGNING_KEY.
service_secrets() {
  SIGNING_KEY="$WORK/signing-key.pem"
  if [ ! -s "$SIGNING_KEY" ]; then
    ensure_commands openssl:openssl
    (umask 077 && openssl genpkey -algorithm ed25519 -out "$SIGNING_KEY" &&
      od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$WORK/internal-api-token") ||
      die "could not make the signing key and the service credential"
  fi
  CREDENTIAL=$(cat "$WORK/internal-api-token")
}

# ------------------------------------------------------------- measuring
# CPU ticks of every started service process, of PostgreSQL's processes
# (all of them: the services' pool connections are long-lived) and of the
# whole machine, one "name ticks" line each.
cpu_snapshot() {
  local name pid
  for name in "${!SERVICE_PIDS[@]}"; do
    pid=${SERVICE_PIDS[$name]}
    awk -v n="$name" '{print n, $14 + $15}' "/proc/$pid/stat" 2>/dev/null || true
  done
  if [ "$TOPO" = postgres ]; then
    local pg=0 t
    for pid in $(pgrep -x postgres || true); do
      t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
      pg=$((pg + t))
    done
    echo "postgres $pg"
  fi
  echo "wall_ms $(date +%s%3N)"
  awk '/^cpu / {idle = $5 + $6; total = 0; for (i = 2; i <= NF; i++) total += $i; print "machine_busy", total - idle; print "machine_total", total}' /proc/stat
}

metrics_snapshot() {
  local dest=$1 name
  mkdir -p "$dest"
  for name in "${!SERVICE_URLS[@]}"; do
    curl -fsS "${SERVICE_URLS[$name]}/metrics" >"$dest/$name.prom" 2>/dev/null || true
  done
}

# SQL against one service's database of the current topology.
q() {
  local svc=$1 sql=$2
  case $TOPO in
    sqlite) sqlite3 -batch -noheader "$TOPO_DIR/$svc.db" "$sql" ;;
    postgres) psql -X -A -t -q -v ON_ERROR_STOP=1 -d "${DB_PREFIX}_$svc" -c "$sql" ;;
  esac
}

unfinished_orders() { q orders "SELECT count(*) FROM orders WHERE notified_at IS NULL OR status = 'pending'"; }

# wrk at $1 connections for $2 seconds into $3.json; $4: mean pause (ms)
# between a connection's requests (a paced run), empty for flat out.
run_wrk() {
  local conns=$1 secs=$2 out=$3 delay=${4:-} threads=$WRK_THREADS
  [ "$conns" -lt "$threads" ] && threads=$conns
  BENCH_TOKENS="$TOPO_DIR/tokens.txt" BENCH_WRK_OUT="$out.json" BENCH_DELAY_MS="$delay" \
    run_tracked wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 10s -s "$BENCH_DIR/orders.lua" \
    "$ORDERS_URL/orders" >"$out.txt" 2>&1 || die "wrk failed: $(tail -n 5 "$out.txt")"
  [ -s "$out.json" ] || die "wrk wrote no summary: $(tail -n 5 "$out.txt")"
}

# One measured step: CPU and metrics before and after, wrk in between.
measure() {
  local name=$1 conns=$2 secs=$3 delay=${4:-} dir="$TOPO_DIR/levels/$1"
  mkdir -p "$dir"
  metrics_snapshot "$dir/metrics.before"
  cpu_snapshot >"$dir/cpu.before"
  run_wrk "$conns" "$secs" "$dir/wrk" "$delay"
  cpu_snapshot >"$dir/cpu.after"
  metrics_snapshot "$dir/metrics.after"
  unfinished_orders >"$dir/unfinished_after"
  echo "$conns" >"$dir/connections"
  log "$TOPO $name: $("$PY" "$BENCH_DIR/report.py" level --in "$dir/wrk.json")"
}

# ------------------------------------------------------------ topologies
declare -A SERVICE_PIDS SERVICE_URLS

start_service() { # name logfile env... -- binary
  local name=$1 logfile=$2 pid
  shift 2
  env RUST_LOG="$SERVICE_LOG" RECOVERY_INTERVAL_MS="$RECOVERY_MS" ${BENCH_POOL_SIZE:+DATABASE_POOL_SIZE=$BENCH_POOL_SIZE} \
    INTERNAL_API_TOKEN="$CREDENTIAL" "$@" >"$logfile" 2>&1 &
  pid=$!
  track "$pid"
  SERVICE_PIDS[$name]=$pid
}

start_sqlite() {
  local port
  port=$(free_port)
  service_secrets
  # The working directory is the run's own, so ./data is fresh too.
  (cd "$TOPO_DIR" && exec env \
    BIND_ADDR="127.0.0.1:$port" \
    USER_DATABASE_URL="sqlite://$TOPO_DIR/users.db" \
    BILLING_DATABASE_URL="sqlite://$TOPO_DIR/billing.db" \
    ORDER_DATABASE_URL="sqlite://$TOPO_DIR/orders.db" \
    NOTIFICATION_DATABASE_URL="sqlite://$TOPO_DIR/notifications.db" \
    INTERNAL_API_TOKEN="$CREDENTIAL" AUTH_SIGNING_KEY_FILE="$SIGNING_KEY" \
    RUST_LOG="$SERVICE_LOG" RECOVERY_INTERVAL_MS="$RECOVERY_MS" ${BENCH_POOL_SIZE:+DATABASE_POOL_SIZE=$BENCH_POOL_SIZE} \
    "$BIN/order-system") >"$TOPO_DIR/order-system.log" 2>&1 &
  local pid=$!
  track "$pid"
  SERVICE_PIDS[order-system]=$pid
  SERVICE_URLS[order-system]="http://127.0.0.1:$port"
  wait_ready "http://127.0.0.1:$port" "$pid"
  USERS_URL="http://127.0.0.1:$port"
  BILLING_URL=$USERS_URL
  ORDERS_URL=$USERS_URL
}

# The four binaries, each on fresh ${DB_PREFIX}_<service> database; with
# "existing", on those databases as they are.
start_postgres() {
  local svc
  declare -A port_of
  service_secrets
  for svc in users billing orders notifications; do
    [ "${1:-}" = existing ] || fresh_db "${DB_PREFIX}_$svc"
    port_of[$svc]=$(free_port)
  done
  local url="postgres://$PGUSER@$PGHOST:$PGPORT/${DB_PREFIX}"
  local billing="http://127.0.0.1:${port_of[billing]}" notifications="http://127.0.0.1:${port_of[notifications]}"
  local users="http://127.0.0.1:${port_of[users]}" orders="http://127.0.0.1:${port_of[orders]}"
  # billing and notification fetch user-service's key set when a token
  # first needs it, so they may start before it.
  start_service billing-service "$TOPO_DIR/billing-service.log" \
    BIND_ADDR="127.0.0.1:${port_of[billing]}" DATABASE_URL="${url}_billing$PG_URL_QUERY" USER_SERVICE_URL="$users" \
    "$BIN/billing-service"
  start_service notification-service "$TOPO_DIR/notification-service.log" \
    BIND_ADDR="127.0.0.1:${port_of[notifications]}" DATABASE_URL="${url}_notifications$PG_URL_QUERY" \
    USER_SERVICE_URL="$users" "$BIN/notification-service"
  start_service user-service "$TOPO_DIR/user-service.log" \
    BIND_ADDR="127.0.0.1:${port_of[users]}" DATABASE_URL="${url}_users$PG_URL_QUERY" BILLING_SERVICE_URL="$billing" \
    AUTH_SIGNING_KEY_FILE="$SIGNING_KEY" "$BIN/user-service"
  start_service order-service "$TOPO_DIR/order-service.log" \
    BIND_ADDR="127.0.0.1:${port_of[orders]}" DATABASE_URL="${url}_orders$PG_URL_QUERY" USER_SERVICE_URL="$users" \
    BILLING_SERVICE_URL="$billing" NOTIFICATION_SERVICE_URL="$notifications" "$BIN/order-service"
  SERVICE_URLS=([user-service]=$users [billing-service]=$billing [order-service]=$orders [notification-service]=$notifications)
  for svc in billing-service notification-service user-service order-service; do
    wait_ready "${SERVICE_URLS[$svc]}" "${SERVICE_PIDS[$svc]}"
  done
  USERS_URL=$users BILLING_URL=$billing ORDERS_URL=$orders
  psql -X -A -t -d postgres -c "SELECT count(*) FILTER (WHERE s.ssl) || ' of ' || count(*) FROM pg_stat_ssl s
      JOIN pg_stat_activity a USING (pid) WHERE a.datname LIKE '${DB_PREFIX}\_%'" >"$TOPO_DIR/tls" 2>/dev/null || true
  echo "$BENCH_PG_SSLMODE" >"$TOPO_DIR/sslmode"
}

stop_services() {
  local name
  : >"$TOPO_DIR/shutdown"
  for name in "${!SERVICE_PIDS[@]}"; do
    stop_pid "${SERVICE_PIDS[$name]}" 35
    echo "$name $STOP_RC" >>"$TOPO_DIR/shutdown"
  done
  SERVICE_PIDS=()
  SERVICE_URLS=()
}

# Checks the databases after the load: money conserved, one letter per
# decided order, nothing left unfinished. Writes verify.txt ("name value"
# lines) and violations.txt (one line each; empty when all is well).
verify() {
  local v="$TOPO_DIR/verify" bad="$TOPO_DIR/violations.txt"
  mkdir -p "$v"
  : >"$bad"
  local orders pending unnotified paid paid_sum rejected cancelled deposits deposited_expected withdrawals withdrawals_n
  local refunds balances negative drift letters
  orders=$(q orders "SELECT count(*) FROM orders")
  pending=$(q orders "SELECT count(*) FROM orders WHERE status = 'pending'")
  unnotified=$(q orders "SELECT count(*) FROM orders WHERE notified_at IS NULL")
  paid=$(q orders "SELECT count(*) FROM orders WHERE status = 'paid'")
  paid_sum=$(q orders "SELECT COALESCE(SUM(price), 0) FROM orders WHERE status = 'paid'")
  rejected=$(q orders "SELECT count(*) FROM orders WHERE status = 'rejected'")
  # The benchmark cancels nothing: an order cancelling or cancelled, or a
  # refund, would be the system's own doing.
  cancelled=$(q orders "SELECT count(*) FROM orders WHERE status IN ('cancelling', 'cancelled')")
  deposits=$(q billing "SELECT COALESCE(SUM(amount), 0) FROM ledger_entries WHERE kind = 'deposit'")
  deposited_expected=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["deposited_total"])' "$TOPO_DIR/seed.json")
  withdrawals=$(q billing "SELECT COALESCE(SUM(amount), 0) FROM ledger_entries WHERE kind = 'withdrawal'")
  withdrawals_n=$(q billing "SELECT count(*) FROM ledger_entries WHERE kind = 'withdrawal'")
  refunds=$(q billing "SELECT COALESCE(SUM(amount), 0) FROM ledger_entries WHERE kind = 'refund'")
  balances=$(q billing "SELECT COALESCE(SUM(balance), 0) FROM accounts")
  negative=$(q billing "SELECT count(*) FROM accounts WHERE balance < 0")
  # Every account's balance is its deposits and refunds less its withdrawals.
  drift=$(q billing "SELECT count(*) FROM accounts a WHERE a.balance <> (SELECT COALESCE(SUM(CASE l.kind WHEN 'withdrawal' THEN -l.amount ELSE l.amount END), 0) FROM ledger_entries l WHERE l.user_id = a.user_id)")
  letters=$(q notifications "SELECT count(*) FROM notifications")
  # The sets that must match one to one, sorted the same way.
  q orders "SELECT 'order-' || id || '|' || user_id || '|' || price FROM orders WHERE status = 'paid'" | LC_ALL=C sort >"$v/paid_orders"
  q billing "SELECT reference || '|' || user_id || '|' || amount FROM ledger_entries WHERE kind = 'withdrawal'" | LC_ALL=C sort >"$v/withdrawals"
  # A rejected order's reason is its decline's (a voided payment would show).
  q orders "SELECT 'order-' || id || '|' || user_id || '|' || price || '|' || COALESCE(failure_reason, '') FROM orders WHERE status = 'rejected'" | LC_ALL=C sort >"$v/rejected_orders"
  q billing "SELECT reference || '|' || user_id || '|' || amount || '|' || reason FROM declined_withdrawals" | LC_ALL=C sort >"$v/declined"
  q orders "SELECT id || '|' || user_id || '|' || CASE status WHEN 'paid' THEN 'order_paid' ELSE 'order_rejected' END FROM orders WHERE status IN ('paid', 'rejected')" | LC_ALL=C sort >"$v/decided_orders"
  q notifications "SELECT order_id || '|' || user_id || '|' || kind FROM notifications" | LC_ALL=C sort >"$v/letters"
  local wd_mismatch declined_mismatch letter_mismatch
  wd_mismatch=$(diff "$v/paid_orders" "$v/withdrawals" | grep -c '^[<>]' || true)
  declined_mismatch=$(diff "$v/rejected_orders" "$v/declined" | grep -c '^[<>]' || true)
  letter_mismatch=$(diff "$v/decided_orders" "$v/letters" | grep -c '^[<>]' || true)

  cat >"$TOPO_DIR/verify.txt" <<EOF
orders $orders
paid $paid
rejected $rejected
cancelling_or_cancelled $cancelled
pending $pending
unnotified $unnotified
paid_prices_sum $paid_sum
deposits_sum $deposits
deposits_expected $deposited_expected
withdrawals_sum $withdrawals
withdrawals_count $withdrawals_n
refunds_sum $refunds
balances_sum $balances
negative_balances $negative
accounts_not_matching_their_ledger $drift
letters $letters
paid_orders_without_matching_withdrawal $wd_mismatch
rejected_orders_without_matching_decline $declined_mismatch
decided_orders_without_exactly_their_letter $letter_mismatch
EOF
  [ "$deposits" = "$deposited_expected" ] || echo "deposits in the ledger ($deposits) differ from what was deposited ($deposited_expected)" >>"$bad"
  [ $((deposits + refunds - balances)) = "$withdrawals" ] || echo "money not conserved: deposits + refunds - balances = $((deposits + refunds - balances)) but withdrawals = $withdrawals" >>"$bad"
  [ "$refunds" = 0 ] || echo "refunds of $refunds though no order was cancelled" >>"$bad"
  [ "$cancelled" = 0 ] || echo "$cancelled orders cancelling or cancelled though none was cancelled" >>"$bad"
  [ "$withdrawals" = "$paid_sum" ] || echo "withdrawals ($withdrawals) differ from the paid orders' prices ($paid_sum)" >>"$bad"
  [ "$withdrawals_n" = "$paid" ] || echo "$withdrawals_n withdrawals for $paid paid orders" >>"$bad"
  [ "$negative" = 0 ] || echo "$negative negative balances" >>"$bad"
  [ "$drift" = 0 ] || echo "$drift accounts whose balance is not their ledger's sum" >>"$bad"
  [ "$pending" = 0 ] || echo "$pending orders still pending after the grace period" >>"$bad"
  [ "$unnotified" = 0 ] || echo "$unnotified orders not notified after the grace period" >>"$bad"
  [ "$letters" = $((paid + rejected)) ] || echo "$letters letters for $((paid + rejected)) decided orders" >>"$bad"
  [ "$wd_mismatch" = 0 ] || echo "$wd_mismatch lines differ between paid orders and withdrawals (see $v)" >>"$bad"
  [ "$declined_mismatch" = 0 ] || echo "$declined_mismatch lines differ between rejected orders and declined withdrawals" >>"$bad"
  [ "$letter_mismatch" = 0 ] || echo "$letter_mismatch lines differ between decided orders and letters" >>"$bad"
  [ "$orders" -gt 0 ] || echo "no orders at all" >>"$bad"
  [ "$rejected" -gt 0 ] || echo "no order was rejected: the seed did not exercise the sad path" >>"$bad"
  # Services must stop cleanly on SIGTERM.
  while read -r name rc; do
    [ "$rc" = 0 ] || echo "$name exited with $rc on SIGTERM" >>"$bad"
  done <"$TOPO_DIR/shutdown"
  if [ -s "$bad" ]; then
    log "$TOPO: $(wc -l <"$bad") violation(s):"
    sed 's/^/    /' "$bad" >&2
  else
    log "$TOPO: verified: $orders orders ($paid paid, $rejected rejected), $letters letters, money conserved"
  fi
}

run_topology() {
  TOPO=$1
  TOPO_DIR="$WORK/$TOPO"
  mkdir -p "$TOPO_DIR/levels"
  SERVICE_PIDS=()
  SERVICE_URLS=()
  log "$TOPO: starting"
  case $TOPO in
    sqlite) start_sqlite ;;
    postgres) psql -X -q -d postgres -c CHECKPOINT >/dev/null 2>&1 || true; start_postgres ;;
    *) die "unknown topology $TOPO" ;;
  esac
  log "$TOPO: seeding $USERS users through the API"
  run_tracked "$PY" "$BENCH_DIR/seed.py" --users-url "$USERS_URL" --billing-url "$BILLING_URL" \
    --users "$USERS" --tag "$$$TOPO" --tokens "$TOPO_DIR/tokens.txt" >"$TOPO_DIR/seed.json" || die "seeding failed"
  local c best=0
  for c in $LEVELS; do
    measure "c$c" "$c" "$SECONDS_PER_LEVEL"
    sleep 1
  done
  if [ "$PACED" = 1 ]; then
    # Half of the best throughput, offered by 64 connections that each pause
    # a random (exponential) time between requests.
    # Each connection's cycle is its pause plus the answer's latency: the
    # pause is the cycle that gives half the best rate, less the mean latency
    # of the level whose throughput came closest to that rate.
    local conns=64 plan best delay
    plan=$("$PY" - "$TOPO_DIR/levels" "$conns" <<'EOF'
import json, pathlib, sys
levels = [json.load(open(p)) for p in pathlib.Path(sys.argv[1]).glob("c*/wrk.json")]
rate = lambda d: d["status"].get("201", 0) / d["duration_s"]
best = max(rate(d) for d in levels)
near = min(levels, key=lambda d: abs(rate(d) - best / 2))
cycle_ms = int(sys.argv[2]) * 1000 / (best / 2)
print(f"{best:.1f} {max(1, round(cycle_ms - near['latency_ms']['mean']))}")
EOF
)
    read -r best delay <<<"$plan"
    log "$TOPO: paced run at about half of $best orders/s ($conns connections, mean pause $delay ms)"
    measure paced "$conns" "$SECONDS_PER_LEVEL" "$delay"
  fi
  log "$TOPO: waiting up to ${GRACE_SECONDS}s for unfinished orders"
  local waited=0 left
  while :; do
    left=$(unfinished_orders)
    [ "$left" = 0 ] && break
    [ "$waited" -ge "$GRACE_SECONDS" ] && break
    sleep 1
    waited=$((waited + 1))
  done
  echo "$waited" >"$TOPO_DIR/grace_waited"
  log "$TOPO: $left unfinished after ${waited}s"
  metrics_snapshot "$TOPO_DIR/metrics.final"
  stop_services
  verify
  if [ "$TOPO" = postgres ]; then
    for svc in users billing orders notifications; do drop_db "${DB_PREFIX}_$svc"; done
  fi
}

# --------------------------------------------------------------- ceilings
# A service's migrations in order, as service-kit runs them on PostgreSQL:
# a block after "-- on sqlite only" is left out until "-- on both".
postgres_migrations() {
  awk '
    FNR == 1 { keep = 1 }
    { line = $0; gsub(/^[ \t]+|[ \t]+$/, "", line) }
    line == "-- on postgresql only" { keep = 1; next }
    line == "-- on sqlite only" { keep = 0; next }
    line == "-- on both" { keep = 1; next }
    keep
  ' "$REPO_ROOT/$1-service/migrations/"*/up.sql
}

ceiling_postgres() {
  local db="${DB_PREFIX}_ceiling" dir="$WORK/ceiling-postgres" svc c jobs
  mkdir -p "$dir"
  fresh_db "$db"
  for svc in order billing notification; do
    postgres_migrations "$svc" | psql -X -q -v ON_ERROR_STOP=1 -d "$db" >/dev/null
  done
  # user-service's idempotency table has the same name as order-service's.
  postgres_migrations user | sed 's/idempotency_keys/user_idempotency_keys/g' |
    psql -X -q -v ON_ERROR_STOP=1 -d "$db" >/dev/null
  psql -X -q -v ON_ERROR_STOP=1 -v users="$USERS" -d "$db" -f "$BENCH_DIR/ceiling/pg_seed.sql" >/dev/null
  psql -X -q -d postgres -c CHECKPOINT >/dev/null 2>&1 || true
  for c in $LEVELS; do
    jobs=2
    [ "$c" -lt 2 ] && jobs=1
    run_tracked pgbench -n -M prepared -c "$c" -j "$jobs" -T "$CEILING_SECONDS" -D first=1 -D last="$USERS" \
      -f "$BENCH_DIR/ceiling/pg_order.sql" "$db" >"$dir/c$c.txt" 2>&1 || die "pgbench failed: $(tail -n 5 "$dir/c$c.txt")"
    log "postgres ceiling c=$c: $(grep -E '^tps' "$dir/c$c.txt" | head -n1)"
  done
  drop_db "$db"
}

ceiling_sqlite() {
  local dir="$WORK/ceiling-sqlite"
  run_tracked "$PY" "$BENCH_DIR/ceiling/sqlite_ceiling.py" --dir "$dir/db" --repo "$REPO_ROOT" --users "$USERS" \
    --seconds "$CEILING_SECONDS" --levels "$LEVELS" >"$WORK/ceiling-sqlite.json" 2>"$WORK/ceiling-sqlite.log" ||
    die "the SQLite ceiling failed: $(tail -n 5 "$WORK/ceiling-sqlite.log")"
  sed 's/^/    /' "$WORK/ceiling-sqlite.log" >&2
  rm -rf "$dir"
}

