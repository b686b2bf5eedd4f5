"""Turns the rendered chart into a local run plan: the cluster's topology on loopback.

Everything comes from the objects the chart renders, as the cluster would use them:
each Deployment's replicas, command, environment, ports, readiness probe and mounted
Secrets, the Secrets behind secretKeyRefs, the Services, the Ingress, and the
PostgreSQL init script with the role passwords of the StatefulSet's environment. What
Kubernetes does around them is played by the software it is modelled on:

  a Service in front of replicas -> HAProxy (haproxy.cfg): one listener per Service,
      roundrobin over one loopback port per replica, health-checked with the readiness
      probe's path (`check inter 500ms fall 1 rise 2`), `retries 0` and no redispatch,
      as kube-proxy follows readiness and never retries;
  the ingress controller -> nginx (nginx/nginx.conf): the Ingress rules for its host,
      with Kubernetes' path semantics (Exact is `location =`; Prefix P matches P and
      P/..., element-wise, the longest wins) and ingress-nginx's forwarding headers.

Only addresses are translated: a Service name becomes its HAProxy listener (or the
PostgreSQL Service the local server, --pg-host/--pg-port), BIND_ADDR 0.0.0.0:<port>
the replica's own loopback port, and a path under a mounted Secret the file written
for it in --work. --service-at <service>=<host:port> places a Service at an address
started by someone else instead (no HAProxy listener for it). The databases and roles
get a prefix so the run cannot touch anything else on the shared server. --values
merges chart values (JSON; repeatable, later ones win) over the defaults, e.g. smaller
pools for a shared server.

Writes into --work: plan.sh (bash, for tests/lib.sh), rendered.yaml, haproxy.cfg,
nginx/nginx.conf and nginx/base-url, secrets/, init-databases.sh.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import socket
import sys
import urllib.parse
from pathlib import Path

from chartlib import RELEASE, SERVICES, label_selector_matches, pod_labels, render

START_ORDER = ["billing-service", "notification-service", "user-service", "order-service"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def var(name: str) -> str:
    return name.replace("-", "_")


class Plan:
    def __init__(self, rendered, work: Path, pg: tuple[str, int], service_at: dict[str, str]):
        self.r = rendered
        self.work = work
        self.pg = pg
        # Every Deployment-backed Service: an HAProxy listener unless placed elsewhere.
        self.service_addr = {}
        self.replica_ports = {}
        for service in self.services():
            component = service["metadata"]["labels"]["app.kubernetes.io/component"]
            workload = self.workload_of(service)
            self.replica_ports[component] = [free_port() for _ in range(workload["spec"]["replicas"])]
            self.service_addr[service["metadata"]["name"]] = service_at.get(component) or f"127.0.0.1:{free_port()}"
        self.placed = {f"{RELEASE}-{c}" for c in service_at}

    def services(self) -> list[dict]:
        return [s for s in self.r.of_kind("Service") if self.workload_of(s)["kind"] == "Deployment"]

    def workload_of(self, service: dict) -> dict:
        selected = [
            w for w in self.r.workloads()
            if label_selector_matches({"matchLabels": service["spec"]["selector"]}, pod_labels(w))
        ]
        assert len(selected) == 1, f"Service {service['metadata']['name']} selects {len(selected)} workloads"
        return selected[0]

    def service_endpoint(self, name: str, port) -> str:
        """A Service name and port (number or name) -> the local address behind it."""
        service = self.r.get("Service", name)
        matches = [p for p in service["spec"]["ports"] if port in (p["port"], p.get("name"))]
        assert len(matches) == 1, f"Service {name} has no port {port}"
        if self.workload_of(service)["kind"] == "StatefulSet":
            assert matches[0]["targetPort"] in (5432, "postgresql"), matches[0]
            return f"{self.pg[0]}:{self.pg[1]}"
        return self.service_addr[name]

    def translate_url(self, value: str) -> str:
        parsed = urllib.parse.urlsplit(value)
        if parsed.scheme not in ("http", "https", "postgres", "postgresql") or not parsed.hostname:
            return value
        if not self.r.find("Service", parsed.hostname):
            return value
        default_port = {"http": 80, "https": 443}.get(parsed.scheme, 5432)
        address = self.service_endpoint(parsed.hostname, parsed.port or default_port)
        userinfo = parsed.netloc.rpartition("@")[0]
        return urllib.parse.urlunsplit(parsed._replace(netloc=f"{userinfo}@{address}" if userinfo else address))

    def secret_value(self, ref: dict) -> str:
        secret = self.r.get("Secret", ref["name"])
        return base64.b64decode(secret["data"][ref["key"]]).decode()

    def mounted_secrets(self, workload: dict, container: dict) -> dict[str, Path]:
        """Writes each mounted Secret's items as files, mode as defaultMode; mount path -> local dir."""
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"].get("volumes", [])}
        mounts = {}
        for mount in container.get("volumeMounts", []):
            source = volumes[mount["name"]].get("secret")
            if not source:
                continue
            local = self.work / "secrets" / workload["metadata"]["name"] / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            data = self.r.get("Secret", source["secretName"])["data"]
            for item in source.get("items") or [{"key": k, "path": k} for k in data]:
                path = local / item["path"]
                path.write_bytes(base64.b64decode(data[item["key"]]))
                path.chmod(item.get("mode", source.get("defaultMode", 0o644)))
            mounts[mount["mountPath"].rstrip("/")] = local
        return mounts

    def env_of(self, workload: dict, container: dict, port: int) -> list[str]:
        mounts = self.mounted_secrets(workload, container)
        out = []
        for entry in container.get("env", []):
            if "value" in entry:
                value = str(entry["value"])
            else:
                value = self.secret_value(entry["valueFrom"]["secretKeyRef"])
            if entry["name"] == "BIND_ADDR":
                assert value == f"0.0.0.0:{http_port(workload)}", value
                value = f"127.0.0.1:{port}"
            else:
                value = self.translate_url(value)
                for mount_path, local in mounts.items():
                    if value.startswith(mount_path + "/"):
                        value = str(local) + value[len(mount_path):]
            out.append(f"{entry['name']}={value}")
        return out


def http_port(workload: dict) -> int:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return {p["name"]: p["containerPort"] for p in container["ports"]}["http"]


def probe_path(container: dict, probe: str) -> str:
    get = container[probe]["httpGet"]
    assert get["port"] == "http", f"{probe} on port {get['port']}"
    return get["path"]


def haproxy_config(plan: Plan, stats_port: int) -> str:
    """One listener per Service over its replicas, health-checked like kube-proxy follows readiness."""
    out = [
        "# Generated by tests/helm/local_plan.py: the chart's Services as HAProxy listeners.\n",
        "global\n  log stdout format raw local0 info\n",
        "defaults\n  mode http\n  log global\n  option httplog\n",
        "  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n",
        "  # kube-proxy does not retry and sends nothing elsewhere: neither does this.\n  retries 0\n",
        f"listen stats\n  bind 127.0.0.1:{stats_port}\n  stats enable\n  stats uri /\n",
    ]
    for service in plan.services():
        name = service["metadata"]["name"]
        if name in plan.placed:
            continue
        workload = plan.workload_of(service)
        component = workload["metadata"]["labels"]["app.kubernetes.io/component"]
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        (port,) = service["spec"]["ports"]
        assert port["targetPort"] == "http", port
        out.append(f"listen {name}\n  bind {plan.service_addr[name]}\n  balance roundrobin\n")
        out.append(f"  option httpchk GET {probe_path(container, 'readinessProbe')}\n")
        for i, replica_port in enumerate(plan.replica_ports[component]):
            out.append(f"  server {component}-{i} 127.0.0.1:{replica_port} check inter 500ms fall 1 rise 2\n")
    return "".join(out)


def nginx_locations(path: str, path_type: str) -> list[str]:
    """Kubernetes Ingress path semantics as nginx locations (as ingress-nginx renders them)."""
    if path_type == "Exact":
        return [f"= {path}"]
    path = path.rstrip("/")
    return [f"= {path}", f"^~ {path}/"] if path else ["/"]


def nginx_config(plan: Plan, port: int, host: str) -> str:
    ingresses = [i for i in plan.r.of_kind("Ingress") if not i["spec"].get("defaultBackend")]
    rules = [r for i in ingresses for r in i["spec"]["rules"] if r.get("host") == host]
    assert rules, f"no Ingress rule for host {host}"
    upstreams, locations = {}, []
    for rule in rules:
        for p in rule["http"]["paths"]:
            service = p["backend"]["service"]
            backend = f"{service['name']}_{service['port'].get('name') or service['port']['number']}"
            upstreams[backend] = plan.service_endpoint(service["name"], service["port"].get("name") or service["port"]["number"])
            for location in nginx_locations(p["path"], p["pathType"]):
                locations.append(f"    location {location} {{ proxy_pass http://{backend}; }}\n")
    root = "" if any(line.startswith("    location / ") for line in locations) else (
        "    # No rule matched: ingress-nginx's default backend answers 404.\n    location / { return 404; }\n")
    return "".join([
        "# Generated by tests/helm/local_plan.py from the rendered Ingress: ingress-nginx's routing for one host.\n",
        "user root;\n" if os.geteuid() == 0 else "",
        "worker_processes 1;\nerror_log stderr notice;\npid nginx.pid;\nevents { worker_connections 1024; }\n",
        "http {\n  access_log /dev/stdout;\n",
        "  client_body_temp_path tmp/body;\n  proxy_temp_path tmp/proxy;\n",
        "  # ingress-nginx's forwarding: a request id when the client sent none, X-Forwarded-*.\n",
        "  map $http_x_request_id $req_id { default $http_x_request_id; \"\" $request_id; }\n",
        "  proxy_http_version 1.1;\n  proxy_set_header Connection \"\";\n  proxy_set_header Host $http_host;\n",
        "  proxy_set_header X-Request-ID $req_id;\n  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n",
        "  proxy_set_header X-Forwarded-Host $host;\n  proxy_set_header X-Forwarded-Proto $scheme;\n",
        *(f"  upstream {name} {{ server {address}; keepalive 16; }}\n" for name, address in sorted(upstreams.items())),
        f"  server {{\n    # Reached by address, so every request counts as one for {host}.\n",
        f"    listen 127.0.0.1:{port} default_server;\n    server_name {host};\n",
        *locations,
        root,
        "  }\n}\n",
    ])


def merge(base: dict, over: dict) -> dict:
    for key, value in over.items():
        base[key] = merge(base.get(key) or {}, value) if isinstance(value, dict) else value
    return base


def arr(name: str, items) -> str:
    return f"{name}=(" + " ".join(shlex.quote(str(i)) for i in items) + ")\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--db-prefix", default="helmrun_")
    parser.add_argument("--values", action="append", default=[], help="chart values (JSON) over the defaults")
    parser.add_argument("--service-at", action="append", default=[], help="<service>=<host:port> started elsewhere")
    args = parser.parse_args(argv)

    service_at = dict(s.split("=", 1) for s in args.service_at)
    assert set(service_at) <= set(SERVICES), f"--service-at takes {sorted(SERVICES)}"
    values = {}
    for more in args.values:
        merge(values, json.loads(more))
    # The chart's databases, with prefixed database and role names.
    defaults = render(values).values["postgresql"]["databases"]
    values.setdefault("postgresql", {})["databases"] = {
        key: {"database": args.db_prefix + db["database"], "role": args.db_prefix + db["role"]}
        for key, db in defaults.items()
    }
    rendered = render(values)
    work = args.work
    (work / "nginx" / "tmp").mkdir(parents=True, exist_ok=True)
    plan = Plan(rendered, work, (args.pg_host, args.pg_port), service_at)
    (work / "rendered.yaml").write_text(rendered.to_yaml())
    stats_port, nginx_port = free_port(), free_port()
    (work / "haproxy.cfg").write_text(haproxy_config(plan, stats_port))
    ingress_host = rendered.of_kind("Ingress")[0]["spec"]["rules"][0]["host"]
    (work / "nginx" / "nginx.conf").write_text(nginx_config(plan, nginx_port, ingress_host))
    (work / "nginx" / "base-url").write_text(f"http://127.0.0.1:{nginx_port}\n")

    out = ["# Generated by tests/helm/local_plan.py from the rendered chart.\n"]
    out.append(arr("SERVICES", START_ORDER))
    # Global even when sourced in a function.
    out.append("declare -gA BINARY SERVICE_ADDR REPLICA_SERVICE\n")
    out.append(f"INGRESS_HOST={shlex.quote(ingress_host)}\n")
    out.append(f"HAPROXY_STATS_URL=http://127.0.0.1:{stats_port}/\n")
    replicas = []
    for component in START_ORDER:
        workload = rendered.deployment_for(component)
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        command = container["command"]
        assert len(command) == 1 and command[0].startswith("/usr/local/bin/"), command
        assert "args" not in container
        out.append(f"BINARY[{component}]={shlex.quote(command[0].rsplit('/', 1)[1])}\n")
        out.append(f"SERVICE_ADDR[{component}]={plan.service_addr[f'{RELEASE}-{component}']}\n")
        annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
        for i, port in enumerate(plan.replica_ports[component]):
            replica = f"{component}-{i}"
            replicas.append(replica)
            out.append(f"REPLICA_SERVICE[{replica}]={component}\n")
            out.append(arr(f"ENV_{var(replica)}", plan.env_of(workload, container, port)))
            probes = [f"{probe} http://127.0.0.1:{port}{probe_path(container, probe)}"
                      for probe in ("startupProbe", "livenessProbe", "readinessProbe")]
            out.append(arr(f"PROBES_{var(replica)}", probes))
            if annotations.get("prometheus.io/scrape") == "true":
                assert int(annotations["prometheus.io/port"]) == http_port(workload)
                out.append(f"METRICS_URL_{var(replica)}=http://127.0.0.1:{port}{annotations['prometheus.io/path']}\n")
    out.append(arr("REPLICAS", replicas))

    # PostgreSQL: the init script and the environment the StatefulSet gives it.
    sts = rendered.get("StatefulSet", f"{RELEASE}-postgresql")
    (pg,) = sts["spec"]["template"]["spec"]["containers"]
    init_env = []
    for entry in pg["env"]:
        if entry["name"] in ("POSTGRES_USER",) or entry["name"].endswith("_DB_PASSWORD"):
            value = entry["value"] if "value" in entry else plan.secret_value(entry["valueFrom"]["secretKeyRef"])
            init_env.append(f"{entry['name']}={value}")
    (script_name, script), = rendered.get("ConfigMap", f"{RELEASE}-postgresql-init")["data"].items()
    (work / "init-databases.sh").write_text(script)
    databases = values["postgresql"]["databases"]
    out.append(arr("INIT_ENV", init_env))
    out.append(arr("DATABASES", [d["database"] for d in databases.values()]))
    out.append(arr("ROLES", [d["role"] for d in databases.values()]))
    for component in SERVICES:
        (container,) = rendered.deployment_for(component)["spec"]["template"]["spec"]["containers"]
        ref = next(e for e in container["env"] if e["name"] == "DATABASE_URL")["valueFrom"]["secretKeyRef"]
        out.append(f"DB_URL_{var(component)}={shlex.quote(plan.translate_url(plan.secret_value(ref)))}\n")
    (work / "plan.sh").write_text("".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
