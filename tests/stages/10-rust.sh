#!/usr/bin/env bash
# Formatting, lints, unused dependencies (cargo-machete), unit and integration tests (every database test runs on
# SQLite and on PostgreSQL; PostgreSQL is required here, not skipped).
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

ensure_debs libpq-dev libsqlite3-dev pkg-config
ensure_postgres

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --workspace --all-targets -q -- -D warnings

# Unused dependencies: cargo-machete, built once into the clone's .tools/ (a debug
# build: 45 s to build instead of 2.5 min, and it still reads the workspace in seconds).
# --with-metadata names each crate as cargo does and checks dev-dependencies too; it
# may rewrite Cargo.lock, which a committed, up-to-date lock never needs.
MACHETE_VERSION=0.9.2
MACHETE="$REPO_ROOT/.tools/bin/cargo-machete"
if [ "$("$MACHETE" --version 2>/dev/null)" != "$MACHETE_VERSION" ]; then
  log "cargo install cargo-machete@$MACHETE_VERSION (into .tools/)"
  cargo install --locked --debug --quiet --root "$REPO_ROOT/.tools" "cargo-machete@$MACHETE_VERSION"
fi
log "cargo machete --with-metadata (unused dependencies)"
lock_before=$(sha256sum Cargo.lock)
machete_start=$(date +%s)
"$MACHETE" --with-metadata
[ "$(sha256sum Cargo.lock)" = "$lock_before" ] || { echo "cargo metadata rewrote Cargo.lock: commit an up-to-date lock" >&2; exit 1; }
echo "cargo machete: no unused dependency ($(( $(date +%s) - machete_start )) s)"

log "cargo test (SQLite and PostgreSQL)"
REQUIRE_POSTGRES=1 cargo test --locked --workspace 2>&1 | tee "$ARTIFACTS/cargo-test.log"
status=${PIPESTATUS[0]}
passed=$(grep -E '^test result:' "$ARTIFACTS/cargo-test.log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -E '^test result:' "$ARTIFACTS/cargo-test.log" | awk '{s+=$6} END {print s+0}')
echo "rust tests: $passed passed, $failed failed"
echo "  of which on PostgreSQL: $(grep -cE '^test postgres::.* ok$' "$ARTIFACTS/cargo-test.log"), on SQLite: $(grep -cE '^test sqlite::.* ok$' "$ARTIFACTS/cargo-test.log")"
cat "$ARTIFACTS"/shutdown-drain-*.txt 2>/dev/null || true  # the drain's measured timings (tests/shutdown.rs)
exit "$status"
