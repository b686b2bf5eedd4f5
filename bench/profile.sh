#!/usr/bin/env bash
# Profiles the hot path of POST /orders once, on the PostgreSQL topology (the
# four binaries, fresh databases; PROFILE_TOPOLOGY=sqlite: the all-in-one
# binary, steps 2 and 3 only), and writes what it finds to
# bench/results/profile-<timestamp>/ (summary.txt is the part to read):
#
#   1. trace:   a few orders one at a time with log_statement = all on the
#               four databases: every statement each service sends per order
#   2. counts:  transactions per order per database (pg_stat_database) under
#               load
#   3. perf:    a system-wide CPU profile (perf record -e cpu-clock) while wrk
#               drives POST /orders at PROFILE_CONCURRENCY (32) for
#               PROFILE_SECONDS (10): where the CPU goes, by process and by
#               shared object and symbol
#
#   bench/profile.sh
#
# Like bench/run.sh it stops everything it started and drops every database
# it created. Needs perf (Debian: linux-perf) for step 3; skips it otherwise.
set -Eeuo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONCURRENCY=${PROFILE_CONCURRENCY:-32}
PROFILE_SECONDS=${PROFILE_SECONDS:-10}
TRACE_ORDERS=${PROFILE_TRACE_ORDERS:-5}
PG_LOG=${PROFILE_PG_LOG:-$(ls /var/log/postgresql/postgresql-*-main.log 2>/dev/null | head -n1)}
OUT="$BENCH_DIR/results/profile-$RUN_STAMP"
mkdir -p "$OUT"

ensure_commands wrk:wrk psql:postgresql-client curl:curl perf:linux-perf
ensure_venv
[ -x "$BIN/order-service" ] || die "build first: bench/run.sh builds the binaries"

TOPO=${PROFILE_TOPOLOGY:-postgres}  # read by lib.sh
if [ "$TOPO" = postgres ]; then ensure_postgres; fi
TOPO_DIR="$WORK/profile"
mkdir -p "$TOPO_DIR/levels"
summary() { echo "$*" | tee -a "$OUT/summary.txt" >&2; }
: >"$OUT/summary.txt"

# ---------------------------------------------------------------- 1. trace
trace() {
  local svc before
  local dbs=()
  for svc in users billing orders notifications; do dbs+=("${DB_PREFIX}_$svc"); done
  for db in "${dbs[@]}"; do
    fresh_db "$db"
    psql -X -q -d postgres -c "ALTER DATABASE \"$db\" SET log_statement = 'all'" >/dev/null
    psql -X -q -d postgres -c "ALTER DATABASE \"$db\" SET log_min_duration_statement = 0" >/dev/null
  done
  # start_postgres makes the databases fresh itself: start the services on
  # these ones instead, with the setting in place before they connect.
  SERVICE_PIDS=()
  SERVICE_URLS=()
  # No recovery round (every second in the benchmark) inside the traced window.
  local recovery=$RECOVERY_MS
  RECOVERY_MS=3600000
  start_postgres existing
  RECOVERY_MS=$recovery
  run_tracked "$PY" "$BENCH_DIR/seed.py" --users-url "$USERS_URL" --billing-url "$BILLING_URL" \
    --users 10 --tag "$$trace" --tokens "$TOPO_DIR/tokens.txt" >/dev/null
  # Warm up (the first use of each statement prepares it; the pools open
  # their connections; the services fetch the key set), then trace.
  local uid token
  read -r uid token <"$TOPO_DIR/tokens.txt"
  for _ in 1 2 3 4 5; do
    curl -fsS -o /dev/null -X POST "$ORDERS_URL/orders" -H 'content-type: application/json' \
      -H "authorization: Bearer $token" -d "{\"user_id\":$uid,\"price\":100}"
  done
  sleep 0.5
  before=$(stat -c %s "$PG_LOG")
  local i
  : >"$OUT/trace-client-seconds"
  for i in $(seq 1 "$TRACE_ORDERS"); do
    read -r uid token < <(sed -n "$((i % 10 + 1))p" "$TOPO_DIR/tokens.txt")
    curl -fsS -o /dev/null -w '%{time_total}\n' -X POST "$ORDERS_URL/orders" -H 'content-type: application/json' \
      -H "authorization: Bearer $token" -d "{\"user_id\":$uid,\"price\":$((100 * i))}" >>"$OUT/trace-client-seconds"
    sleep 0.2
  done
  sleep 0.5
  tail -c +"$((before + 1))" "$PG_LOG" >"$OUT/trace.log"
  stop_services
  for db in "${dbs[@]}"; do drop_db "$db"; done
  summary "== 1. statements per order, by database ($TRACE_ORDERS orders traced; $OUT/trace.log)"
  "$PY" - "$OUT/trace.log" "$DB_PREFIX" "$TRACE_ORDERS" "$OUT/trace-client-seconds" <<'EOF' | tee -a "$OUT/summary.txt" >&2
import collections, re, sys
log, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
per_db = collections.defaultdict(list)
for line in open(log, errors="replace"):
    m = re.search(r"@(" + re.escape(prefix) + r"_\w+) LOG:\s+(statement|execute [^:]*): (.*)", line)
    if m:
        per_db[m.group(1)[len(prefix) + 1:]].append(m.group(3).strip())
total = 0
for db in ("users", "orders", "billing", "notifications"):
    stmts = per_db.get(db, [])
    total += len(stmts)
    print(f"{db}: {len(stmts) / n:.1f} statements per order")
    kinds = collections.Counter(re.sub(r"\s+", " ", s)[:90] for s in stmts)
    for s, c in kinds.most_common():
        print(f"   {c / n:4.1f} x  {s}")
print(f"all databases: {total / n:.1f} statements (round trips) per order")
# Time: what the database spent on each statement (log_min_duration_statement
# = 0: parse, bind and execute of the extended protocol, or the simple
# query), against the order's whole time as curl saw it, one at a time.
spent = collections.Counter()
for line in open(log, errors="replace"):
    m = re.search(r"@(" + re.escape(prefix) + r"_\w+) LOG:\s+duration: ([\d.]+) ms\s+(\w+)[^:]*:\s*(.*)", line)
    if m:
        db = m.group(1)[len(prefix) + 1:]
        spent[db] += float(m.group(2))
client = [float(x) * 1000 for x in open(sys.argv[4]).read().split()]
wall = sum(client) / len(client) if client else 0.0
db_total = sum(spent.values()) / n
print(f"time per order, one order at a time: {wall:.2f} ms as the client saw it; inside PostgreSQL "
      f"{db_total:.2f} ms (" + ", ".join(f"{db} {spent[db] / n:.2f}" for db in ("users", "orders", "billing", "notifications")) +
      f"); everything else (HTTP hops, services' own work, round trips, thread hand-offs) {wall - db_total:.2f} ms "
      "(with every statement logged, which slows both)")
EOF
}

# ------------------------------------------------------- 2. and 3. under load
# Connections this machine opened (connect()), from /proc/net/snmp.
tcp_active_opens() {
  awk '/^Tcp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "ActiveOpens") c = i; h = 1 } else print $c }' /proc/net/snmp
}

pg_counts() {
  psql -X -A -t -F ' ' -d postgres -c "SELECT substr(datname, length('${DB_PREFIX}_') + 1), xact_commit, xact_rollback,
      tup_returned + tup_fetched, tup_inserted, tup_updated FROM pg_stat_database WHERE datname LIKE '${DB_PREFIX}\_%'"
}

under_load() {
  DB_PREFIX="${DB_PREFIX}_load"
  SERVICE_PIDS=()
  SERVICE_URLS=()
  if [ "$TOPO" = postgres ]; then start_postgres; else start_sqlite; fi
  run_tracked "$PY" "$BENCH_DIR/seed.py" --users-url "$USERS_URL" --billing-url "$BILLING_URL" \
    --users "$USERS" --tag "$$load" --tokens "$TOPO_DIR/tokens.txt" >"$TOPO_DIR/seed.json"
  measure warmup 8 3
  if [ "$TOPO" = postgres ]; then
    # Idle backends publish their statistics within 10 s (PostgreSQL 15).
    sleep 11
    pg_counts >"$OUT/pg_stat.before"
  fi
  local perf_pid=""
  if perf record -e cpu-clock -F 499 -a -o "$TOPO_DIR/perf-test.data" -- true >/dev/null 2>&1; then
    perf record -e cpu-clock -F 499 -a -o "$OUT/perf.data" -- sleep "$PROFILE_SECONDS" >"$OUT/perf-record.txt" 2>&1 &
    perf_pid=$!
    track "$perf_pid"
  else
    summary "(perf cannot record here: no CPU profile)"
  fi
  local opens_before opens_after
  opens_before=$(tcp_active_opens)
  measure "c$CONCURRENCY" "$CONCURRENCY" "$PROFILE_SECONDS"
  opens_after=$(tcp_active_opens)
  if [ -n "$perf_pid" ]; then wait "$perf_pid" || true; untrack "$perf_pid"; fi
  local tls="" backends=""
  if [ "$TOPO" = postgres ]; then
    tls=$(psql -X -A -t -d postgres -c "SELECT count(*) FILTER (WHERE s.ssl) || ' of ' || count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.datname LIKE '${DB_PREFIX}\_%'")
    backends=$(psql -X -A -t -d postgres -c "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE datname LIKE '${DB_PREFIX}\_%'")
    sleep 11
    pg_counts >"$OUT/pg_stat.after"
  fi
  local pids_of=()
  for name in "${!SERVICE_PIDS[@]}"; do pids_of+=("$name=${SERVICE_PIDS[$name]}"); done
  cp "$TOPO_DIR/levels/c$CONCURRENCY/wrk.json" "$OUT/wrk.json"
  local orders
  orders=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["status"].get("201", 0))' "$OUT/wrk.json")
  summary ""
  summary "== 2. per order under load (c=$CONCURRENCY, ${PROFILE_SECONDS}s: $("$PY" "$BENCH_DIR/report.py" level --in "$OUT/wrk.json"))"
  [ -z "$tls" ] || summary "the services' database connections using TLS: $tls"
  summary "new TCP connections opened on the machine during the load: $((opens_after - opens_before)) for $orders orders (keep-alive at work when this is far below the 3 service calls per order)"
  summary "mean time inside each route (the services' /metrics):"
  "$PY" "$BENCH_DIR/report.py" endpoints --before "$TOPO_DIR/levels/c$CONCURRENCY/metrics.before" \
    --after "$TOPO_DIR/levels/c$CONCURRENCY/metrics.after" | tee -a "$OUT/summary.txt" >&2
  [ "$TOPO" = postgres ] && "$PY" - "$OUT/pg_stat.before" "$OUT/pg_stat.after" "$orders" <<'EOF' | tee -a "$OUT/summary.txt" >&2
import sys
def load(p):
    return {l.split()[0]: list(map(int, l.split()[1:])) for l in open(p) if l.strip()}
b, a, n = load(sys.argv[1]), load(sys.argv[2]), int(sys.argv[3])
print(f"{'database':<14} {'transactions/order':>19} {'rows inserted/order':>20} {'rows updated/order':>19}")
total = 0
for db in ("users", "orders", "billing", "notifications"):
    if db in a and db in b:
        d = [x - y for x, y in zip(a[db], b[db])]
        total += d[0] + d[1]
        print(f"{db:<14} {(d[0] + d[1]) / n:>19.2f} {d[3] / n:>20.2f} {d[4] / n:>19.2f}")
print(f"{'all':<14} {total / n:>19.2f}   (each one ends with a commit: a WAL flush when it wrote)")
EOF
  metrics_snapshot "$OUT/metrics"
  stop_services
  if [ -s "$OUT/perf.data" ]; then
    summary ""
    summary "== 3. CPU profile (perf, cpu-clock, system-wide, ${PROFILE_SECONDS}s; $OUT/perf.data)"
    local groups=() entry
    for entry in "${pids_of[@]}"; do groups+=("$entry"); done
    [ -n "$backends" ] && groups+=("postgres backends of the four services=$backends")
    "$PY" "$BENCH_DIR/perf_summary.py" "$OUT/perf.data" "${groups[@]}" 2>&1 | tee -a "$OUT/summary.txt" >&2
  fi
}

[ "$TOPO" = postgres ] && trace
under_load
log "profile written to $OUT (summary.txt)"
