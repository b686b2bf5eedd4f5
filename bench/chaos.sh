#!/usr/bin/env bash
# The chaos soak (testkit/src/bin/chaos.rs) for many seeds and longer than the test stage:
#
#   bench/chaos.sh [N]      N random seeds (20), BENCH_CHAOS_SECONDS each (180)
#   BENCH_CHAOS_SEEDS="1 2 3" bench/chaos.sh     these seeds instead
#
# Prints a table of figures per seed (faults, requests, indefinite answers, orders, violations)
# and writes it to bench/results/chaos-<timestamp>.txt with each seed's full output beside it
# (bench/results/chaos-<timestamp>/seed-<seed>.txt). The services' logs are kept for the seeds
# that failed (same directory), dropped for the ones that passed.
#
# Environment (all optional): BENCH_CHAOS_SECONDS (180), BENCH_CHAOS_SEEDS, BENCH_CHAOS_USERS,
# BENCH_CHAOS_CLIENTS (the soak's defaults: 30 and 8), BENCH_NO_BUILD (1: skip cargo build),
# PGHOST PGPORT PGUSER (127.0.0.1, 5432, postgres).
# Exit status: 0 when every seed passed, 1 otherwise.
set -Eeuo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

COUNT=${1:-20}
case $COUNT in '' | *[!0-9]*) die "usage: bench/chaos.sh [number of seeds]" ;; esac
SOAK_SECONDS=${BENCH_CHAOS_SECONDS:-180}
if [ -n "${BENCH_CHAOS_SEEDS:-}" ]; then
  read -r -a SEEDS <<<"$BENCH_CHAOS_SEEDS"
else
  SEEDS=()
  for _ in $(seq 1 "$COUNT"); do SEEDS+=("$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')"); done
fi

ensure_commands psql:postgresql-client pg_isready:postgresql-client
ensure_postgres
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  log "cargo build --release --workspace --bins (the services and the soak)"
  # The tests' build (tests/lib.sh build_release): the same artifacts, so neither undoes the other.
  run_tracked cargo build --manifest-path "$REPO_ROOT/Cargo.toml" --release --locked --workspace --bins -q ||
    die "the release build failed"
fi
[ -x "$BIN/chaos" ] || die "missing $BIN/chaos"

OUT="$BENCH_DIR/results/chaos-$RUN_STAMP"
TABLE="$OUT.txt"
mkdir -p "$OUT"
log "${#SEEDS[@]} seed(s), ${SOAK_SECONDS}s each; output in $OUT"

# The figures line the soak prints last: "chaos-figures seed=… faults=… …".
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

printf '%-20s %5s %6s %4s %5s %4s %8s %6s %6s %6s %6s %6s %5s %5s  %s\n' \
  seed secs faults kill pause term requests indef orders paid reject cancel races viol result | tee "$TABLE"
failed=0
for seed in "${SEEDS[@]}"; do
  rc=0
  soak_env=(CHAOS_SEED="$seed" CHAOS_SECONDS="$SOAK_SECONDS" CHAOS_LOG_DIR="$OUT/seed-$seed-logs")
  [ -n "${BENCH_CHAOS_USERS:-}" ] && soak_env+=(CHAOS_USERS="$BENCH_CHAOS_USERS")
  [ -n "${BENCH_CHAOS_CLIENTS:-}" ] && soak_env+=(CHAOS_CLIENTS="$BENCH_CHAOS_CLIENTS")
  run_tracked env "${soak_env[@]}" "$BIN/chaos" >"$OUT/seed-$seed.txt" 2>&1 || rc=$?
  figures=$(grep '^chaos-figures ' "$OUT/seed-$seed.txt" || true)
  case $rc in
    0) result=ok; rm -rf "$OUT/seed-$seed-logs" ;;
    1) result=VIOLATIONS; failed=$((failed + 1)) ;;
    *) result="could not run (exit $rc)"; failed=$((failed + 1)) ;;
  esac
  if [ -n "$figures" ]; then
    printf '%-20s %5s %6s %4s %5s %4s %8s %6s %6s %6s %6s %6s %5s %5s  %s\n' "$seed" \
      "$(field "$figures" seconds)" "$(field "$figures" faults)" "$(field "$figures" kill)" \
      "$(field "$figures" pause)" "$(field "$figures" terminate)" "$(field "$figures" requests)" \
      "$(field "$figures" indefinite)" "$(field "$figures" orders)" "$(field "$figures" paid)" \
      "$(field "$figures" rejected)" "$(field "$figures" cancelled)" "$(field "$figures" cancel_races)" \
      "$(field "$figures" violations)" \
      "$result" | tee -a "$TABLE"
  else
    printf '%-20s %s\n' "$seed" "$result (see $OUT/seed-$seed.txt)" | tee -a "$TABLE"
  fi
  if [ "$rc" -ne 0 ]; then
    # Each broken invariant with its first three cases, then the command that replays the seed.
    awk '/^  VIOLATIONS:/ { on = 1; next } /^chaos-figures/ { on = 0 }
         on && /^    [a-z0-9-]+: [0-9]+$/ { shown = 0; print; next }
         on && shown++ < 3' "$OUT/seed-$seed.txt" | cut -c1-200 | sed 's/^/    /' | tee -a "$TABLE"
    echo "    replay: $(sed -n 's/^chaos soak: .*; replay: //p' "$OUT/seed-$seed.txt")" | tee -a "$TABLE"
  fi
done
log "$(( ${#SEEDS[@]} - failed )) of ${#SEEDS[@]} seed(s) passed; table: $TABLE"
[ "$failed" -eq 0 ] || die "$failed seed(s) broke an invariant or could not run"
