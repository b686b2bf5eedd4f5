#!/usr/bin/env bash
# Stage 65: the real image, run the way the chart runs it.
#
# The Dockerfile is built with podman from the release binaries (BIN_SOURCE=prebuilt,
# --pull=never, host network for apt) on a base image made locally with debootstrap
# (tests/container/base-image.sh, cached in podman's storage). The chart is rendered for
# namespace arch with one replica per service; tests/helm/local_plan.py gives each a loopback
# port, puts HAProxy in front as the Services and nginx as the Ingress, and makes fresh
# databases and roles with the chart's PostgreSQL init script, and
# tests/container/podman_plan.py turns each Deployment's pod spec into `podman run` flags:
# the rendered image, command and environment, runAsUser:runAsGroup and fsGroup, a
# read-only root with only the emptyDir paths writable (no /tmp, /run or /var/tmp of
# podman's own), the mounted Secrets read-only, no capabilities, no-new-privileges, the default seccomp profile, the CPU
# and memory limits, the termination grace period, and --init. The four containers run
# with host networking; the image must hold the binaries just built (same build id), the
# running processes are checked against the security context (uid/gid/groups, no
# capabilities, NoNewPrivs, seccomp, the only writable mounts are the emptyDirs), the time
# from `podman run` to a ready probe is reported, the probes and metrics must answer, the
# Postman collection runs through nginx and HAProxy, `podman stop` (SIGTERM) must end
# each container with exit code 0 within the grace period, and once more without --init,
# with the binary as PID 1 as in a Kubernetes pod.
#
# Skips (exit 0, with a SKIPPED line) only where podman cannot run at all: not root,
# podman missing with no apt-get to install it, `podman info` failing, or a trivial
# container failing to start. REQUIRE_CONTAINERS=1 turns a skip into a failure.
# Every container, pod and volume made here is removed on exit (trap), and the databases
# and roles are dropped. The base image stays cached; the project image stays tagged as the
# chart names it (localhost/order-system:<appVersion>), and the images that earlier builds
# left behind are removed (tests/container/prune-build-cache.sh).
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

COLLECTION="$REPO_ROOT/tests/postman/order-flow.postman_collection.json"
INGRESS_HOST=arch.homework
BASE_IMAGE=localhost/debian:bookworm-slim
export CONTAINERS_CONF="$REPO_ROOT/tests/container/containers.conf"
RUN_LABEL="order-system.test=65-container-$$"
stage_start=$(date +%s%N)

skip() {
  echo "SKIPPED: stage 65-container: $*"
  if [ "${REQUIRE_CONTAINERS:-}" = 1 ]; then
    echo "REQUIRE_CONTAINERS=1: a skip is a failure" >&2
    exit 1
  fi
  exit 0
}
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

# ---- can podman run here at all? ------------------------------------------------------
[ "$(uname -s)" = Linux ] || skip "containers need Linux (this is $(uname -s))"
[ "$(id -u)" = 0 ] || skip "rootful podman needs root (running as uid $(id -u))"
need=()
for tool in podman buildah runc debootstrap catatonit; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/libexec/podman/$tool" ] || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || skip "${need[*]} missing and no apt-get to install them"
  ensure_debs podman buildah runc debootstrap catatonit
fi
command -v readelf >/dev/null 2>&1 || ensure_debs binutils
podman_info_err=$(podman info 2>&1 >/dev/null) || skip "podman info fails: $podman_info_err"

prepare_chart_run
CONTAINERS=()
remove_containers() {
  local name id
  for name in "${CONTAINERS[@]:-}"; do
    [ -n "$name" ] || continue
    podman container exists "$name" 2>/dev/null || continue
    podman logs "$name" >"$ARTIFACTS/container-${name%-$$}.log" 2>&1 || true
  done
  # Everything labelled by this run: containers (with their anonymous volumes), pods, volumes.
  for id in $(podman ps -aq --filter "label=$RUN_LABEL" 2>/dev/null); do
    podman rm -f -v --time 5 "$id" >/dev/null 2>&1 || true
  done
  for id in $(podman pod ps -q --filter "label=$RUN_LABEL" 2>/dev/null); do
    podman pod rm -f "$id" >/dev/null 2>&1 || true
  done
  for id in $(podman volume ls -q --filter "label=$RUN_LABEL" 2>/dev/null); do
    podman volume rm -f "$id" >/dev/null 2>&1 || true
  done
}
cleanup() {
  local rc=$?
  [ -n "${IMAGE_MOUNTED:-}" ] && podman image unmount "$IMAGE_MOUNTED" >/dev/null 2>&1
  remove_containers
  stop_started
  drop_databases_and_roles
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

# A container that does nothing: if even that cannot start, podman cannot run here.
log "base image $BASE_IMAGE (debootstrap once, then cached in podman's storage)"
t0=$(date +%s%N)
bash tests/container/base-image.sh "$BASE_IMAGE" docker.io/library/debian:bookworm-slim
echo "base image ready in $(ms_since "$t0") ms: $(podman image inspect --format '{{.Id}}' "$BASE_IMAGE" | cut -c1-12), $(( $(podman image inspect --format '{{.Size}}' "$BASE_IMAGE") / 1000000 )) MB"
CONTAINERS+=("ctr65-probe-$$")
if ! probe_err=$(podman run --name "ctr65-probe-$$" --label "$RUN_LABEL" --rm --pull=never --network=host \
    --read-only --read-only-tmpfs=false --cap-drop ALL --security-opt no-new-privileges --init \
    --user 10001:10001 "$BASE_IMAGE" true 2>&1); then
  skip "a trivial container does not start: $probe_err"
fi

# ---- the chart, rendered: addresses, databases, and the podman flags of each pod --------
log "plan from the chart rendered for namespace arch"
plan_from_chart --db-prefix ctrrun_ --values '{"userService":{"replicaCount":1},"billingService":{"replicaCount":1},"orderService":{"replicaCount":1},"notificationService":{"replicaCount":1}}'
python tests/container/podman_plan.py --rendered "$WORK/rendered.yaml" --secrets "$WORK/secrets" >"$WORK/podman.sh"
# shellcheck source=/dev/null
source "$WORK/podman.sh"
cp "$WORK/rendered.yaml" "$ARTIFACTS/container-rendered.yaml"

# ---- the image ----------------------------------------------------------------------------
# The chart's image reference (e.g. order-system:0.1.0) resolves to localhost/<it> with
# --pull=never, exactly as the rendered pod specs name it.
IMAGE_TAG="localhost/$CHART_IMAGE"
log "podman build $IMAGE_TAG (BIN_SOURCE=prebuilt: target/release)"
old_image=$(podman image inspect --format '{{.Id}}' "$IMAGE_TAG" 2>/dev/null || true)
t0=$(date +%s%N)
if ! podman build --pull=never --network=host --force-rm --build-arg BIN_SOURCE=prebuilt \
    -t "$IMAGE_TAG" -f Dockerfile . >"$ARTIFACTS/container-build.log" 2>&1; then
  tail -n 40 "$ARTIFACTS/container-build.log" >&2
  echo "podman build failed (full log: tests/artifacts/container-build.log)" >&2
  exit 1
fi
build_ms=$(ms_since "$t0")
new_image=$(podman image inspect --format '{{.Id}}' "$IMAGE_TAG")
if [ -n "$old_image" ] && [ "$old_image" != "$new_image" ]; then
  podman rmi "$old_image" >/dev/null 2>&1 || true
fi
# New binaries make new cache layers (the unstripped copies alone are ~280 MB); drop the
# stale ones of earlier builds of this Dockerfile, keep the apt layers this build reused.
bash tests/container/prune-build-cache.sh "$ARTIFACTS/container-build.log"
image_bytes=$(podman image inspect --format '{{.Size}}' "$IMAGE_TAG")
base_bytes=$(podman image inspect --format '{{.Size}}' "$BASE_IMAGE")
echo "image $IMAGE_TAG ${new_image:0:12}: $((image_bytes / 1000000)) MB ($image_bytes bytes;" \
  "base $((base_bytes / 1000000)) MB + $(((image_bytes - base_bytes) / 1000000)) MB), built in $((build_ms / 1000)) s"
podman image inspect --format 'user {{.Config.User}}, cmd {{json .Config.Cmd}}, stop signal {{.Config.StopSignal}}' "$IMAGE_TAG"
# The image holds the binaries just built (stripped of debug info, same GNU build id).
build_id() { readelf -n "$1" | awk '/Build ID:/ { print $3 }'; }
image_root=$(podman image mount "$IMAGE_TAG")
IMAGE_MOUNTED=$IMAGE_TAG
for binary in user-service billing-service order-service notification-service; do
  host_id=$(build_id "$BIN/$binary") image_id=$(build_id "$image_root/usr/local/bin/$binary")
  if [ -z "$host_id" ] || [ "$host_id" != "$image_id" ]; then
    echo "$binary in the image (build id '$image_id') is not target/release/$binary ('$host_id')" >&2
    exit 1
  fi
  echo "  /usr/local/bin/$binary: build id ${image_id:0:16}… as target/release, $(( $(stat -c %s "$image_root/usr/local/bin/$binary") / 1000000 )) MB stripped ($(( $(stat -c %s "$BIN/$binary") / 1000000 )) MB)"
done
podman image unmount "$IMAGE_TAG" >/dev/null
IMAGE_MOUNTED=""

# ---- databases and roles, by the chart's init script --------------------------------------
init_databases_like_the_chart

# ---- the four containers ------------------------------------------------------------------
log "start the four containers from the rendered pod specs (host network, loopback only)"
declare -A READY_MS STARTED_MS
for replica in "${REPLICAS[@]}"; do
  svc=${REPLICA_SERVICE[$replica]}
  var=${svc//-/_}
  name="ctr65-$svc-$$"
  env_array="ENV_${replica//-/_}[@]"
  args_array="PODMAN_ARGS_${var}[@]"
  cmd_array="COMMAND_${var}[@]"
  image_var="IMAGE_${var}"
  probes_var="PROBES_${replica//-/_}[@]"
  envfile="$WORK/env-$svc"
  (umask 077; printf '%s\n' "${!env_array}" >"$envfile")
  # Every address handed to a container is on loopback.
  for kv in "${!env_array}"; do
    case "$kv" in
      BIND_ADDR=127.0.0.1:*|RUST_LOG=*|DATABASE_POOL_SIZE=*|*_MS=*|TOKEN_TTL_SECONDS=*) ;;
      INTERNAL_API_TOKEN=*|AUTH_SIGNING_KEY_FILE="$WORK/secrets/"*) ;;
      DATABASE_URL=postgres://*@127.0.0.1:5432/*|*_SERVICE_URL=http://127.0.0.1:*) ;;
      *) echo "$svc: ${kv%%=*} is not a loopback address or a known setting: ${kv%%=*}=..." >&2; exit 1 ;;
    esac
  done
  ready_url=""
  for probe in "${!probes_var}"; do [ "${probe%% *}" = readinessProbe ] && ready_url=${probe#* }; done
  [ -n "$ready_url" ] || { echo "$svc: no readiness probe" >&2; exit 1; }

  CONTAINERS+=("$name")
  run_args=(podman run -d --name "$name" --label "$RUN_LABEL" --pull=never --network=host
            --env-file "$envfile" "${!args_array}" "${!image_var}" "${!cmd_array}")
  printf '  %s:' "$svc"; printf ' %q' "${run_args[@]:2}"; printf '\n'
  t0=$(date +%s%N)
  "${run_args[@]}" >/dev/null
  ready=""
  for _ in $(seq 1 2400); do
    if curl -fsS -o /dev/null --max-time 1 "$ready_url" 2>/dev/null; then ready=1; break; fi
    [ "$(podman container inspect --format '{{.State.Running}}' "$name")" = true ] || break
    sleep 0.05
  done
  t_ready=$(date +%s%N)
  if [ -z "$ready" ]; then
    echo "$svc: not ready at $ready_url (container state: $(podman container inspect --format '{{.State.Status}} exit {{.State.ExitCode}}' "$name")); log:" >&2
    podman logs "$name" 2>&1 | tail -n 40 >&2
    exit 1
  fi
  started_ns=$(podman container inspect --format '{{.State.StartedAt.UnixNano}}' "$name")
  READY_MS[$svc]=$(( (t_ready - t0) / 1000000 ))
  STARTED_MS[$svc]=$(( (t_ready - started_ns) / 1000000 ))
  echo "  $svc ready: ${READY_MS[$svc]} ms after podman run, ${STARTED_MS[$svc]} ms after the container started"
done

log "the running processes have the pod specs' security context"
for svc in "${SERVICES[@]}"; do
  var=${svc//-/_}
  name="ctr65-$svc-$$"
  init_pid=$(podman container inspect --format '{{.State.Pid}}' "$name")
  children=$(cat "/proc/$init_pid/task/$init_pid/children")
  [ "$(wc -w <<<"$children")" = 1 ] || { echo "$svc: init has children '$children', expected the service alone" >&2; exit 1; }
  pid=${children// /}
  exe=$(readlink "/proc/$pid/exe")
  uid_var="EXPECT_UID_$var" gid_var="EXPECT_GID_$var" groups_var="EXPECT_GROUPS_${var}[@]"
  nnp_var="EXPECT_NNP_$var" seccomp_var="EXPECT_SECCOMP_$var" ro_var="EXPECT_READ_ONLY_ROOT_$var"
  writable_var="WRITABLE_${var}[@]"
  python - "$pid" "$svc" "${!uid_var}" "${!gid_var}" "${!nnp_var}" "${!seccomp_var}" "${!ro_var}" \
    "$(IFS=,; echo "${!groups_var}")" "$(IFS=,; echo "${!writable_var}")" <<'PY'
import os, sys
pid, svc, uid, gid, nnp, seccomp, ro_root, groups, writable = sys.argv[1:]
status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines())
f = {k: v.split() for k, v in status.items()}
problems = []
if set(f["Uid"]) != {uid}: problems.append(f"Uid {f['Uid']}, expected {uid}")
if set(f["Gid"]) != {gid}: problems.append(f"Gid {f['Gid']}, expected {gid}")
if sorted(f["Groups"]) != sorted(g for g in groups.split(",") if g): problems.append(f"Groups {f['Groups']}, expected {groups}")
for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
    if int(f[cap][0], 16) != 0: problems.append(f"{cap} {f[cap][0]}, expected none (drop ALL)")
if f["NoNewPrivs"][0] != nnp: problems.append(f"NoNewPrivs {f['NoNewPrivs'][0]}, expected {nnp}")
if f["Seccomp"][0] != seccomp: problems.append(f"Seccomp {f['Seccomp'][0]}, expected {seccomp}")
# Writable file trees the process sees (kernel filesystems under /proc, /sys and /dev aside).
rw = []
for line in open(f"/proc/{pid}/mountinfo"):
    fields = line.split()
    mount_point, options = fields[4], fields[5].split(",")
    fstype = fields[fields.index("-") + 1]
    if mount_point in ("/proc", "/sys", "/dev") or mount_point.startswith(("/proc/", "/sys/", "/dev/")):
        continue
    if "rw" in options:
        rw.append(f"{mount_point} ({fstype})")
    if mount_point == "/" and ro_root == "1" and "ro" not in options:
        problems.append("root file system is not read-only")
expected = sorted(f"{p} (tmpfs)" for p in writable.split(",") if p)
if sorted(rw) != expected: problems.append(f"writable mounts {sorted(rw)}, expected only the emptyDirs {expected}")
# Files named by the environment (the mounted signing key): there, readable by the
# process's groups only, as the kubelet mounts a Secret with fsGroup and mode 0440.
env = dict(e.split("=", 1) for e in open(f"/proc/{pid}/environ").read().split("\0") if "=" in e)
for name, path in env.items():
    if name.endswith("_FILE"):
        st = os.stat(f"/proc/{pid}/root{path}")
        if not (st.st_mode & 0o040 and st.st_gid in map(int, f["Groups"])) or st.st_mode & 0o007:
            problems.append(f"{name}={path}: mode {st.st_mode & 0o777:o} group {st.st_gid}")
        else:
            print(f"  {svc}: {name}={path} readable by its group {st.st_gid} only")
if problems:
    print(f"  {svc}: " + "; ".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"  {svc} (pid {pid}): uid {uid} gid {gid} groups {f['Groups']}, no capabilities, "
      f"NoNewPrivs {nnp}, seccomp filter, writable only {', '.join(rw) or 'nothing'}")
PY
  [ "$exe" = "/usr/local/bin/${BINARY[$svc]}" ] || { echo "$svc: runs $exe, expected /usr/local/bin/${BINARY[$svc]}" >&2; exit 1; }
done

log "probes (startup, liveness, readiness) and metrics"
for replica in "${REPLICAS[@]}"; do
  probes_var="PROBES_${replica//-/_}[@]"
  for probe in "${!probes_var}"; do
    url=${probe#* }
    wait_for_http "$url" 30 || { podman logs "ctr65-${REPLICA_SERVICE[$replica]}-$$" 2>&1 | tail -n 40 >&2; exit 1; }
    echo "  $replica ${probe%% *} $url: 200"
  done
done
check_metrics_endpoints

# ---- through nginx (the Ingress) and HAProxy (the Services) --------------------------------
start_haproxy "$ARTIFACTS/container-haproxy.log"
start_nginx_from_ingress "$ARTIFACTS/container-nginx.log"
for docs in users billing orders notifications; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/docs/$docs/")
  [ "$code" = 200 ] || { echo "GET /docs/$docs/ through the ingress: $code, expected 200" >&2; exit 1; }
done
echo "  Swagger UI of the four services (served from the binaries in the image): 200"

log "Postman collection through nginx and HAProxy"
newman run "$COLLECTION" --env-var "baseUrl=$BASE" --reporters cli

# ---- SIGTERM ----------------------------------------------------------------------------------
log "podman stop (SIGTERM): every container exits 0 within its grace period"
declare -A STOP_MS
for svc in "${SERVICES[@]}"; do
  var=${svc//-/_}
  name="ctr65-$svc-$$"
  grace_var="STOP_TIMEOUT_$var"
  [ "$(podman container inspect --format '{{.State.Running}}' "$name")" = true ] || {
    echo "$svc: container is no longer running before the stop" >&2; podman logs "$name" 2>&1 | tail -n 40 >&2; exit 1; }
  t0=$(date +%s%N)
  podman stop --time "${!grace_var}" "$name" >/dev/null
  STOP_MS[$svc]=$(ms_since "$t0")
  state=$(podman container inspect --format '{{.State.ExitCode}} {{.State.OOMKilled}}' "$name")
  logs=$(podman logs "$name" 2>&1)
  if [ "$state" != "0 false" ]; then
    echo "$svc: exit code/OOM after SIGTERM: $state (expected 0 false); log:" >&2
    tail -n 30 <<<"$logs" >&2
    exit 1
  fi
  if grep -qiE 'panicked|read-only file system|permission denied' <<<"$logs"; then
    echo "$svc: its log shows a problem:" >&2
    grep -iE 'panicked|read-only file system|permission denied' <<<"$logs" >&2
    exit 1
  fi
  if [ "${STOP_MS[$svc]}" -ge $(( ${!grace_var} * 1000 )) ]; then
    echo "$svc: stop took ${STOP_MS[$svc]} ms, the whole grace period (was it killed?)" >&2
    exit 1
  fi
  echo "  $svc: exit 0 after SIGTERM in ${STOP_MS[$svc]} ms"
done

# Kubernetes has no --init: the binary itself is PID 1 of its container there, and a PID 1
# gets no default signal actions. The service must handle SIGTERM itself.
log "SIGTERM to the binary as PID 1 (as in Kubernetes, without --init)"
svc=${SERVICES[0]}
var=${svc//-/_}
name="ctr65-$svc-pid1-$$"
args_array="PODMAN_ARGS_${var}[@]"
cmd_array="COMMAND_${var}[@]"
image_var="IMAGE_${var}"
grace_var="STOP_TIMEOUT_$var"
probes_var="PROBES_${svc//-/_}_0[@]"
no_init=()
for a in "${!args_array}"; do [ "$a" = --init ] || no_init+=("$a"); done
CONTAINERS+=("$name")
podman run -d --name "$name" --label "$RUN_LABEL" --pull=never --network=host \
  --env-file "$WORK/env-$svc" "${no_init[@]}" "${!image_var}" "${!cmd_array}" >/dev/null
for probe in "${!probes_var}"; do [ "${probe%% *}" = readinessProbe ] && wait_for_http "${probe#* }" 60; done
[ "$(podman container top "$name" pid comm | awk 'NR == 2 { print $1 }')" = 1 ] || { echo "$svc is not PID 1 without --init" >&2; exit 1; }
t0=$(date +%s%N)
podman stop --time "${!grace_var}" "$name" >/dev/null
pid1_ms=$(ms_since "$t0")
state=$(podman container inspect --format '{{.State.ExitCode}}' "$name")
[ "$state" = 0 ] && [ "$pid1_ms" -lt $(( ${!grace_var} * 1000 )) ] || {
  echo "$svc as PID 1: exit $state after ${pid1_ms} ms of SIGTERM (expected 0, before the grace period ends)" >&2
  podman logs "$name" 2>&1 | tail -n 20 >&2; exit 1; }
echo "  $svc as PID 1: exit 0 after SIGTERM in $pid1_ms ms"

log "summary"
echo "image $IMAGE_TAG: $((image_bytes / 1000000)) MB"
for svc in "${SERVICES[@]}"; do
  echo "  $svc: ready ${READY_MS[$svc]} ms after podman run (${STARTED_MS[$svc]} ms after start), stopped in ${STOP_MS[$svc]} ms"
done
echo "container run: the image runs as the chart configures it (stage took $(( $(ms_since "$stage_start") / 1000 )) s)"
