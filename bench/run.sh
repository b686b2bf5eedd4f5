#!/usr/bin/env bash
# The load benchmark (see docs/performance.md): one command that builds the
# release binaries, runs the order flow under wrk at fixed concurrency levels
# on two topologies, checks the databases afterwards, measures what the
# databases alone allow (the ceiling), and writes bench/results/*.json and
# docs/performance.md + docs/performance.png.
#
#   bench/run.sh
#
# Topologies:
#   sqlite    the all-in-one binary (order-system), one SQLite file per service
#   postgres  the four service binaries as separate processes, one fresh
#             PostgreSQL database each
#
# Environment (all optional):
#   BENCH_SECONDS          seconds per concurrency level (15)
#   BENCH_LEVELS           concurrency levels ("1 8 32 64")
#   BENCH_CEILING_SECONDS  seconds per level of the ceilings (BENCH_SECONDS)
#   BENCH_TOPOLOGIES       which to run ("sqlite postgres")
#   BENCH_USERS            users seeded through the API (200)
#   BENCH_PACED            1: also a paced run at half the best throughput,
#                          for p99 at half load (1)
#   BENCH_GRACE_SECONDS    how long unfinished orders may take to be finished
#                          by the recovery loop after the load (45)
#   BENCH_WRK_THREADS      wrk threads (1: the machine is small)
#   BENCH_POOL_SIZE        DATABASE_POOL_SIZE for the services (their default)
#   BENCH_RUST_LOG         RUST_LOG for the services (info, as deployed)
#   BENCH_RECOVERY_INTERVAL_MS  the services' RECOVERY_INTERVAL_MS (1000)
#   BENCH_NO_BUILD         1: skip cargo build (the binaries must be there)
#   BENCH_BIN_DIR          where the binaries are (target/release); with
#                          BENCH_NO_BUILD=1, to compare saved builds
#   BENCH_SKIP_CEILING     1: skip the ceilings (for quick experiments)
#   BENCH_PG_SSLMODE       libpq sslmode for the services and pgbench (disable,
#                          as in the cluster; empty: libpq's default, prefer)
#   BENCH_PUBLISH          1: write results/latest.json and docs/ (1); a
#                          failed run never overwrites them
#   PGHOST PGPORT PGUSER   the PostgreSQL server (127.0.0.1, 5432, postgres)
#
# Exit status: 0 when every run passed its checks (no errors, no money or
# letter out of place, nothing left unfinished); 1 otherwise. Whatever
# happens, every process it started is stopped and every database it
# created is dropped.
set -Eeuo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ------------------------------------------------------------------- main
ensure_commands wrk:wrk sqlite3:sqlite3 psql:postgresql-client pgbench:postgresql-client curl:curl
ensure_venv
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  log "cargo build --release (the five binaries)"
  # The five binaries by name (no test-only crate): the same artifacts as
  # tests/lib.sh's `cargo build --release --workspace --bins`, so neither
  # build undoes the other.
  run_tracked cargo build --manifest-path "$REPO_ROOT/Cargo.toml" --release --locked --bins -q \
    -p order-system -p user-service -p billing-service -p order-service -p notification-service ||
    die "the release build failed"
fi
for b in order-system user-service billing-service order-service notification-service; do
  [ -x "$BIN/$b" ] || die "missing $BIN/$b"
done
case " $TOPOLOGIES " in *" postgres "*) ensure_postgres ;; esac

log "work directory $WORK; levels: $LEVELS; ${SECONDS_PER_LEVEL}s each"
for topo in $TOPOLOGIES; do
  if [ "${BENCH_SKIP_CEILING:-0}" != 1 ]; then
    case $topo in
      sqlite) ceiling_sqlite ;;
      postgres) ceiling_postgres ;;
    esac
  fi
  run_topology "$topo"
done

# ------------------------------------------------------------------ report
mkdir -p "$BENCH_DIR/results"
machine_json=$("$PY" - <<'EOF'
import json, os, platform, re, subprocess
def out(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:
        return ""
lscpu = out("lscpu")
model = next((l.split(":", 1)[1].strip() for l in lscpu.splitlines() if l.startswith("Model name")), "")
mem_kb = int(re.search(r"MemTotal:\s+(\d+)", open("/proc/meminfo").read()).group(1))
pg = out("psql", "-X", "-A", "-t", "-d", "postgres", "-c",
         "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings "
         "WHERE name IN ('fsync','synchronous_commit','shared_buffers','max_connections','wal_level','commit_delay')")
print(json.dumps({
    "nproc": int(out("nproc") or 0),
    "cpu_model": model,
    "memory_gib": round(mem_kb / 1024 / 1024, 1),
    "kernel": platform.release(),
    "postgres": out("psql", "-X", "-A", "-t", "-d", "postgres", "-c", "SHOW server_version"),
    "postgres_settings": pg,
    "sqlite": out("sqlite3", "--version").split(" ")[0],
    "wrk": out("sh", "-c", "wrk --version 2>&1 | head -n1").split(" Copyright")[0],
    "rustc": out("rustc", "--version"),
}))
EOF
)
git_commit=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
"$PY" "$BENCH_DIR/report.py" assemble --work "$WORK" --out "$BENCH_DIR/results/$RUN_STAMP.json" \
  --topologies "$TOPOLOGIES" --levels "$LEVELS" --seconds "$SECONDS_PER_LEVEL" --ceiling-seconds "$CEILING_SECONDS" \
  --users "$USERS" --started "$STARTED_AT" --elapsed $(( $(date +%s) - T0 )) --command "$COMMAND" \
  --env "$(env | grep -E '^BENCH_' | sort | tr '\n' ' ')" --machine "$machine_json" --commit "$git_commit" \
  --clk-tck "$(getconf CLK_TCK)"
ok=$("$PY" -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["ok"]))' "$BENCH_DIR/results/$RUN_STAMP.json")
"$PY" "$BENCH_DIR/report.py" summary --in "$BENCH_DIR/results/$RUN_STAMP.json"
if [ "$ok" = 1 ] && [ "$PUBLISH" = 1 ]; then
  cp "$BENCH_DIR/results/$RUN_STAMP.json" "$BENCH_DIR/results/latest.json"
  "$PY" "$BENCH_DIR/report.py" render --in "$BENCH_DIR/results/latest.json" \
    --md "$REPO_ROOT/docs/performance.md" --png "$REPO_ROOT/docs/performance.png"
  log "wrote bench/results/$RUN_STAMP.json, bench/results/latest.json, docs/performance.md, docs/performance.png"
else
  log "wrote bench/results/$RUN_STAMP.json (latest.json and docs/ left as they were)"
fi
log "done in $(( $(date +%s) - T0 ))s"
[ "$ok" = 1 ] || die "the run broke its checks (see above)"
