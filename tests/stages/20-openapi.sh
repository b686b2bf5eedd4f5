#!/usr/bin/env bash
# Stage 20: the OpenAPI documents openapi/{user,billing,order,notification}-service.yaml.
#  1. redocly lint (pinned @redocly/cli, offline, rules in tests/openapi/redocly.yaml):
#     no errors in any of the four documents.
#  2. Generated clients still work: openapi-python-client and openapi-typescript
#     (both pinned) generate a client from each document into
#     tests/openapi/clients/generated/; tsc type-checks the TypeScript types
#     against tests/openapi/clients/usage.ts (openapi-fetch), and
#     tests/openapi/clients/check_python.py uses the Python clients against each
#     all-in-one binary of step 3 (a user, a deposit, orders, the ledger, letters
#     and a problem, all through the generated functions and models).
#  3. schemathesis (pinned in tests/requirements.txt, settings in
#     tests/openapi/schemathesis.toml, hooks in tests/openapi/hooks.py) fuzzes
#     each document against a freshly started all-in-one binary: first with its
#     SQLite files in a fresh working directory (the local run), then with fresh
#     PostgreSQL databases (the cluster's backend; SPEC.md: both backends pass
#     the same tests). A fixed number of examples per operation; every response
#     must be no 5xx and conform to the document (status code, content type,
#     body schema, headers). Reports: tests/artifacts/schemathesis/<backend>/.
# Knobs: OPENAPI_FUZZ_SEED (default: random, printed), OPENAPI_FUZZ_MAX_EXAMPLES
# (default 50), OPENAPI_FUZZ_BACKENDS (default "sqlite postgres").
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

SERVICES=(user billing order notification)
REPORTS="$ARTIFACTS/schemathesis"
MAX_EXAMPLES="${OPENAPI_FUZZ_MAX_EXAMPLES:-50}"
SEED="${OPENAPI_FUZZ_SEED:-$(( (RANDOM << 15) | RANDOM ))}"
BACKENDS="${OPENAPI_FUZZ_BACKENDS:-sqlite postgres}"
stage_scratch openapi
DB_PREFIX="openapi_$$"

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ok   $*"; }

documents=()
for svc in "${SERVICES[@]}"; do
  doc="openapi/$svc-service.yaml"
  [ -f "$doc" ] || { echo "missing $doc (regenerate with: cargo run --bin openapi)" >&2; exit 1; }
  documents+=("$doc")
done

# --- 1. Lint ------------------------------------------------------------------
log "redocly lint (tests/openapi/redocly.yaml)"
ensure_node_modules
if REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
  redocly lint --config tests/openapi/redocly.yaml "${documents[@]}"; then
  pass "redocly lint: ${#documents[@]} documents, no problems"
else
  fail "redocly lint found problems in the documents (see above)"
fi

# --- 2. Generated clients -----------------------------------------------------
ensure_python_tools
CLIENTS="$REPO_ROOT/tests/openapi/clients"
rm -rf "$CLIENTS/generated"
clients_start=$(date +%s)
log "openapi-python-client $(openapi-python-client --version | awk '{print $NF}') and openapi-typescript $(openapi-typescript --version | awk '{print $NF}'): a client from each document"
for svc in "${SERVICES[@]}"; do
  # --fail-on-warning: an operation or schema the generator had to skip fails the check.
  if openapi-python-client generate --path "openapi/$svc-service.yaml" --meta none --fail-on-warning \
    --output-path "$CLIENTS/generated/python/${svc}_service_client" >"$WORKDIR/python-client-$svc.txt" 2>&1; then
    pass "openapi-python-client: openapi/$svc-service.yaml"
  else
    cat "$WORKDIR/python-client-$svc.txt" >&2
    fail "openapi-python-client: openapi/$svc-service.yaml"
  fi
  if openapi-typescript "openapi/$svc-service.yaml" -o "$CLIENTS/generated/typescript/$svc-service.ts" >"$WORKDIR/typescript-$svc.txt" 2>&1; then
    pass "openapi-typescript: openapi/$svc-service.yaml"
  else
    cat "$WORKDIR/typescript-$svc.txt" >&2
    fail "openapi-typescript: openapi/$svc-service.yaml"
  fi
done
if tsc -p "$CLIENTS/tsconfig.json"; then
  pass "tsc --noEmit: tests/openapi/clients/usage.ts against the generated types"
else
  fail "tsc --noEmit: tests/openapi/clients/usage.ts against the generated types"
fi
echo "clients generated and type-checked in $(( $(date +%s) - clients_start )) s"

# --- 3. Fuzz ------------------------------------------------------------------
build_release
export SCHEMATHESIS_HOOKS="$REPO_ROOT/tests/openapi/hooks.py"
rm -rf "$REPORTS"
mkdir -p "$REPORTS"
log "schemathesis $(schemathesis --version | awk '{print $NF}'): seed $SEED, at most $MAX_EXAMPLES examples per operation, backends: $BACKENDS"

# fuzz_backend BACKEND: one fresh all-in-one binary on that backend, each
# document fuzzed against it in turn (users first, so later documents meet
# real users and accounts); reports under $REPORTS/BACKEND/.
fuzz_backend() {
  local backend="$1" port server_pid svc
  local out="$REPORTS/$backend" server_dir="$WORKDIR/$backend-server" fuzz_dir="$WORKDIR/$backend-fuzz"
  local server_log="$out/order-system.log"
  local db_env=()
  mkdir -p "$out" "$server_dir" "$fuzz_dir"
  case "$backend" in
    sqlite) ;; # the default: ./data/*.db under the fresh working directory
    postgres)
      ensure_postgres >/dev/null
      for svc in "${SERVICES[@]}"; do
        DATABASES+=("${DB_PREFIX}_$svc")
        db_env+=("$(echo "$svc" | tr '[:lower:]' '[:upper:]')_DATABASE_URL=$(fresh_pg_database "${DB_PREFIX}_$svc")")
      done
      ;;
    *) fail "unknown backend $backend"; return ;;
  esac
  port=$(free_port)
  log "[$backend] starting the all-in-one binary on 127.0.0.1:$port (working directory $server_dir)"
  start_bg "$server_log" \
    env -C "$server_dir" \
    -u DATABASE_URL -u USER_SERVICE_URL -u BILLING_SERVICE_URL -u NOTIFICATION_SERVICE_URL \
    -u USER_DATABASE_URL -u BILLING_DATABASE_URL -u ORDER_DATABASE_URL -u NOTIFICATION_DATABASE_URL \
    BIND_ADDR="127.0.0.1:$port" RUST_LOG="${RUST_LOG:-info}" "${db_env[@]}" \
    "$BIN/order-system"
  server_pid="${STARTED_PIDS[-1]}"
  if ! wait_for_http "http://127.0.0.1:$port/health/ready" 60; then
    tail -n 30 "$server_log" >&2 || true
    fail "[$backend] the all-in-one binary did not get ready"
    stop_started
    return
  fi
  log "[$backend] the generated Python clients (tests/openapi/clients/check_python.py)"
  if python "$CLIENTS/check_python.py" "$CLIENTS/generated/python" "http://127.0.0.1:$port"; then
    pass "[$backend] generated Python clients"
  else
    fail "[$backend] generated Python clients"
  fi
  for svc in "${SERVICES[@]}"; do
    log "[$backend] fuzzing openapi/$svc-service.yaml"
    # From a scratch directory: schemathesis keeps a cache in its working directory.
    if (cd "$fuzz_dir" && timeout 900 schemathesis --no-color \
      --config-file "$REPO_ROOT/tests/openapi/schemathesis.toml" \
      run "$REPO_ROOT/openapi/$svc-service.yaml" \
      --url "http://127.0.0.1:$port" \
      --max-examples "$MAX_EXAMPLES" \
      --seed "$SEED" \
      --report junit,json \
      --report-junit-path "$out/$svc-service.junit.xml" \
      --report-json-path "$out/$svc-service.json") 2>&1 | tee "$out/$svc-service.txt"; then
      pass "[$backend] schemathesis: openapi/$svc-service.yaml"
    else
      fail "[$backend] schemathesis: openapi/$svc-service.yaml (report: tests/artifacts/schemathesis/$backend/$svc-service.txt)"
    fi
  done
  if ! kill -0 "$server_pid" 2>/dev/null; then
    fail "[$backend] the all-in-one binary died during the fuzzing (log: tests/artifacts/schemathesis/$backend/order-system.log)"
  fi
  if grep -q 'panicked' "$server_log"; then
    grep -n -m5 'panicked' "$server_log" >&2
    fail "[$backend] the all-in-one binary panicked (log: tests/artifacts/schemathesis/$backend/order-system.log)"
  fi
  stop_started
}

for backend in $BACKENDS; do
  fuzz_backend "$backend"
done

# Operations and test cases, from the JSON reports.
log "summary"
python3 - "$REPORTS" "$BACKENDS" "${SERVICES[@]}" <<'PY' || fail "could not read the schemathesis reports"
import json, os, sys

reports, backends, services = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
ops = cases = 0
for backend in backends:
    for svc in services:
        path = os.path.join(reports, backend, f"{svc}-service.json")
        if not os.path.exists(path):
            print(f"{backend:9} {svc + '-service':21} no report")
            continue
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
        tested = report["operations"]["tested"]
        generated = report["test_cases"]["generated"]
        failing = report["test_cases"]["with_failures"] + report["test_cases"]["errored"]
        ops += tested
        cases += generated
        print(f"{backend:9} {svc + '-service':21} {tested:3} operations {generated:6} test cases {failing:4} failing")
print(f"{'total':31} {ops:3} operations {cases:6} test cases")
PY
echo "reports: tests/artifacts/schemathesis/<backend>/ (JUnit, JSON, console output, server log)"

echo
if [ "$failures" -gt 0 ]; then
  echo "openapi: $failures check(s) failed (reproduce with OPENAPI_FUZZ_SEED=$SEED)"
  exit 1
fi
echo "openapi: all checks passed"
