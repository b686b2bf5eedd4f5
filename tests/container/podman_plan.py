"""Turns the rendered chart's pod specs into `podman run` flags (tests/stages/65-container.sh).

The addresses (BIND_ADDR, DATABASE_URL, the peer URLs) come from tests/helm/local_plan.py,
which maps every Service to a loopback port. This file maps the rest of each Deployment's
pod template, as the kubelet would apply it, to podman:

  image, command, args, workingDir     -> the image reference, --entrypoint, arguments, --workdir
  pod/container securityContext        -> --user uid:gid, --group-add (fsGroup, supplementalGroups),
                                          --read-only --read-only-tmpfs=false (readOnlyRootFilesystem),
                                          --cap-drop/--cap-add, --security-opt no-new-privileges
                                          (allowPrivilegeEscalation: false), seccomp
  emptyDir volumes and their mounts     -> tmpfs mounts of sizeLimit, mode 0777, empty (the only
                                          writable paths; Kubernetes has no writable /tmp, /run
                                          or /var/tmp of its own)
  Secret volumes and their mounts      -> read-only binds of the files tests/helm/local_plan.py
                                          wrote (--secrets), group fsGroup as the kubelet makes
                                          it, and env values under the mount path as rendered
  resources.limits                      -> --cpus, --memory
  terminationGracePeriodSeconds         -> --stop-timeout (and the `podman stop --time`)

and always --init (the kubelet's pause container reaps zombies; here catatonit does, and it
forwards SIGTERM to the service). Whatever the mapping does not know how to mirror (another
volume type, privileged, hostPath, a sidecar, init containers, ...) is an error, so a chart
change cannot silently run differently here than in the cluster.

    python tests/container/podman_plan.py --rendered WORK/rendered.yaml --secrets WORK/secrets > WORK/podman.sh

Writes bash: for each component C (dashes as underscores) PODMAN_ARGS_C, COMMAND_C (the
arguments after the image), IMAGE_C, STOP_TIMEOUT_C, WRITABLE_C (the emptyDir mount paths),
and EXPECT_UID_C, EXPECT_GID_C, EXPECT_GROUPS_C, EXPECT_NNP_C, EXPECT_SECCOMP_C and
EXPECT_READ_ONLY_ROOT_C for the check of the running process (capabilities: only `drop: [ALL]`
is accepted, so every capability set must be empty).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
from decimal import Decimal
from pathlib import Path

import yaml

POD_SECURITY_KEYS = {"runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup", "seccompProfile",
                     "supplementalGroups", "fsGroupChangePolicy"}
CONTAINER_SECURITY_KEYS = {"runAsNonRoot", "runAsUser", "runAsGroup", "allowPrivilegeEscalation",
                           "readOnlyRootFilesystem", "capabilities", "seccompProfile", "privileged"}
# Pod spec fields with no effect on a single process run with host networking and no
# Kubernetes API (scheduling, service account without a token, Service env vars off).
POD_IGNORED = {"serviceAccountName", "automountServiceAccountToken", "enableServiceLinks",
               "nodeSelector", "affinity", "tolerations", "topologySpreadConstraints",
               "imagePullSecrets", "priorityClassName", "schedulerName", "restartPolicy", "dnsPolicy"}
POD_MAPPED = {"securityContext", "containers", "volumes", "terminationGracePeriodSeconds"}
# Container fields: probes, ports and pull policy are handled by the stage itself (probes are
# polled, ports come from local_plan.py, the image is built locally and never pulled).
CONTAINER_HANDLED_ELSEWHERE = {"name", "ports", "env", "startupProbe", "livenessProbe",
                               "readinessProbe", "imagePullPolicy", "terminationMessagePath",
                               "terminationMessagePolicy"}
CONTAINER_MAPPED = {"image", "command", "args", "workingDir", "securityContext", "volumeMounts", "resources"}

MEMORY_SUFFIX = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
                 "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


class Unmirrored(Exception):
    pass


def memory_bytes(quantity) -> int:
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(quantity))
    if not m or m.group(2) not in MEMORY_SUFFIX:
        raise Unmirrored(f"memory quantity {quantity!r}")
    return int(Decimal(m.group(1)) * MEMORY_SUFFIX[m.group(2)])


def cpus(quantity) -> str:
    q = str(quantity)
    value = Decimal(q[:-1]) / 1000 if q.endswith("m") else Decimal(q)
    return format(value.normalize(), "f")


def component_of(deployment: dict) -> str:
    return deployment["metadata"]["labels"]["app.kubernetes.io/component"]


def plan_for(deployment: dict, secrets: Path) -> dict:
    name = deployment["metadata"]["name"]
    pod = deployment["spec"]["template"]["spec"]
    unknown = set(pod) - POD_MAPPED - POD_IGNORED - {"containers"}
    if unknown:
        raise Unmirrored(f"{name}: pod spec fields {sorted(unknown)}")
    if pod.get("initContainers") or len(pod["containers"]) != 1:
        raise Unmirrored(f"{name}: exactly one container and no init containers are mirrored")
    (container,) = pod["containers"]
    unknown = set(container) - CONTAINER_MAPPED - CONTAINER_HANDLED_ELSEWHERE
    if unknown:
        raise Unmirrored(f"{name}: container fields {sorted(unknown)}")

    pod_sc = pod.get("securityContext") or {}
    sc = container.get("securityContext") or {}
    if set(pod_sc) - POD_SECURITY_KEYS:
        raise Unmirrored(f"{name}: pod securityContext {sorted(set(pod_sc) - POD_SECURITY_KEYS)}")
    if set(sc) - CONTAINER_SECURITY_KEYS:
        raise Unmirrored(f"{name}: container securityContext {sorted(set(sc) - CONTAINER_SECURITY_KEYS)}")
    if sc.get("privileged"):
        raise Unmirrored(f"{name}: privileged")

    def effective(key):
        return sc[key] if key in sc else pod_sc.get(key)

    args: list[str] = ["--init"]
    uid, gid = effective("runAsUser"), effective("runAsGroup")
    if uid is None or gid is None:
        raise Unmirrored(f"{name}: runAsUser and runAsGroup must be set (the image's USER is not checked)")
    if effective("runAsNonRoot") and int(uid) == 0:
        raise Unmirrored(f"{name}: runAsNonRoot with runAsUser 0 would never start")
    args += ["--user", f"{int(uid)}:{int(gid)}"]
    groups = [int(g) for g in pod_sc.get("supplementalGroups") or []]
    if pod_sc.get("fsGroup") is not None:
        groups.append(int(pod_sc["fsGroup"]))
    groups = sorted(set(groups))
    for g in groups:
        args += ["--group-add", str(g)]

    if sc.get("readOnlyRootFilesystem"):
        args += ["--read-only", "--read-only-tmpfs=false"]
    caps = sc.get("capabilities") or {}
    if set(caps) - {"drop", "add"}:
        raise Unmirrored(f"{name}: capabilities {sorted(caps)}")
    for cap in caps.get("drop") or []:
        args += ["--cap-drop", cap]
    for cap in caps.get("add") or []:
        args += ["--cap-add", cap]
    if "ALL" not in (caps.get("drop") or []) or caps.get("add"):
        raise Unmirrored(f"{name}: only `drop: [ALL]` is checked on the running process")
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    seccomp = (effective("seccompProfile") or {"type": "RuntimeDefault"})["type"]
    if seccomp == "Unconfined":
        args += ["--security-opt", "seccomp=unconfined"]
    elif seccomp != "RuntimeDefault":
        raise Unmirrored(f"{name}: seccompProfile {seccomp}")

    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    writable = []
    for mount in container.get("volumeMounts") or []:
        volume = volumes[mount["name"]]
        if set(volume) == {"name", "secret"} and mount.get("readOnly") and set(mount) == {"name", "mountPath", "readOnly"}:
            files = secrets / name / mount["name"]
            for f in files.iterdir():
                os.chown(f, -1, pod_sc.get("fsGroup", -1))
            args += ["--volume", f"{files}:{mount['mountPath']}:ro"]
            # The env as rendered for a path under the mount (local_plan.py points it at the host copy).
            for e in container.get("env", []):
                if str(e.get("value", "")).startswith(mount["mountPath"].rstrip("/") + "/"):
                    args += ["--env", f"{e['name']}={e['value']}"]
            continue
        if set(volume) != {"name", "emptyDir"} or set(mount) - {"name", "mountPath", "readOnly"}:
            raise Unmirrored(f"{name}: volume {volume} mounted as {mount} (only emptyDir is mirrored)")
        empty = volume["emptyDir"] or {}
        options = ["rw" if not mount.get("readOnly") else "ro", "mode=0777", "notmpcopyup"]
        if empty.get("sizeLimit") is not None:
            options.append(f"size={memory_bytes(empty['sizeLimit'])}")
        args += ["--tmpfs", f"{mount['mountPath']}:{','.join(options)}"]
        if not mount.get("readOnly"):
            writable.append(mount["mountPath"])

    limits = (container.get("resources") or {}).get("limits") or {}
    if set(limits) - {"cpu", "memory"}:
        raise Unmirrored(f"{name}: limits {sorted(limits)}")
    if "cpu" in limits:
        args += ["--cpus", cpus(limits["cpu"])]
    if "memory" in limits:
        args += ["--memory", str(memory_bytes(limits["memory"]))]

    grace = int(pod.get("terminationGracePeriodSeconds", 30))
    args += ["--stop-timeout", str(grace)]

    command = container.get("command")
    if not command:
        raise Unmirrored(f"{name}: no command (the image's CMD would run)")
    # Kubernetes: command replaces the ENTRYPOINT and, without args, the CMD too.
    args += ["--entrypoint", json.dumps(command)]
    if container.get("workingDir"):
        args += ["--workdir", container["workingDir"]]

    return {
        "image": container["image"],
        "args": args,
        "command": [str(a) for a in container.get("args") or []],
        "stop_timeout": grace,
        "writable": writable,
        "uid": int(uid),
        "gid": int(gid),
        "groups": sorted(set(groups) | {int(gid)}),
        "nnp": 1 if sc.get("allowPrivilegeEscalation") is False else 0,
        "seccomp": 2 if seccomp == "RuntimeDefault" else 0,
        "read_only_root": bool(sc.get("readOnlyRootFilesystem")),
    }


def arr(name: str, items) -> str:
    return f"{name}=(" + " ".join(shlex.quote(str(i)) for i in items) + ")\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rendered", required=True, type=Path)
    parser.add_argument("--secrets", required=True, type=Path, help="the Secret files local_plan.py wrote")
    args = parser.parse_args(argv)
    docs = [d for d in yaml.safe_load_all(args.rendered.read_text()) if d]
    out = ["# Generated by tests/container/podman_plan.py from the rendered chart.\n"]
    images = set()
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        try:
            p = plan_for(deployment, args.secrets)
        except Unmirrored as e:
            print(f"podman_plan: cannot mirror {e}", file=sys.stderr)
            return 1
        var = component_of(deployment).replace("-", "_")
        images.add(p["image"])
        out.append(f"IMAGE_{var}={shlex.quote(p['image'])}\n")
        out.append(arr(f"PODMAN_ARGS_{var}", p["args"]))
        out.append(arr(f"COMMAND_{var}", p["command"]))
        out.append(arr(f"WRITABLE_{var}", p["writable"]))
        out.append(f"STOP_TIMEOUT_{var}={p['stop_timeout']}\n")
        out.append(f"EXPECT_UID_{var}={p['uid']}\nEXPECT_GID_{var}={p['gid']}\n")
        out.append(arr(f"EXPECT_GROUPS_{var}", p["groups"]))
        out.append(f"EXPECT_NNP_{var}={p['nnp']}\nEXPECT_SECCOMP_{var}={p['seccomp']}\n")
        out.append(f"EXPECT_READ_ONLY_ROOT_{var}={int(p['read_only_root'])}\n")
    if len(images) != 1:
        print(f"podman_plan: expected one image for all Deployments, got {sorted(images)}", file=sys.stderr)
        return 1
    out.append(f"CHART_IMAGE={shlex.quote(images.pop())}\n")
    sys.stdout.write("".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
