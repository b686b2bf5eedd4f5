#!/usr/bin/env bash
# Formatting, lints, unit and integration tests (every database test runs on
# SQLite and on PostgreSQL; PostgreSQL is required here, not skipped).
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

ensure_debs libpq-dev libsqlite3-dev pkg-config
ensure_postgres

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --workspace --all-targets -q -- -D warnings

log "cargo test (SQLite and PostgreSQL)"
REQUIRE_POSTGRES=1 cargo test --locked --workspace 2>&1 | tee "$ARTIFACTS/cargo-test.log"
status=${PIPESTATUS[0]}
passed=$(grep -E '^test result:' "$ARTIFACTS/cargo-test.log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -E '^test result:' "$ARTIFACTS/cargo-test.log" | awk '{s+=$6} END {print s+0}')
echo "rust tests: $passed passed, $failed failed"
echo "  of which on PostgreSQL: $(grep -cE '^test postgres::.* ok$' "$ARTIFACTS/cargo-test.log"), on SQLite: $(grep -cE '^test sqlite::.* ok$' "$ARTIFACTS/cargo-test.log")"
cat "$ARTIFACTS"/shutdown-drain-*.txt 2>/dev/null || true  # the drain's measured timings (tests/shutdown.rs)
exit "$status"
