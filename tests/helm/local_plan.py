"""Turns the rendered chart into a local run plan (used by tests/stages/61-helm-run.sh).

Everything comes from the objects the chart renders, as the cluster would use them:
each Deployment's command, environment and ports, the Secret behind DATABASE_URL, the
Services behind the peer URLs, the probe paths, the Ingress, and the PostgreSQL init
script with the role passwords of the StatefulSet's environment. Only addresses are
translated: a Service name becomes the 127.0.0.1 port of the workload it selects
(Deployments: the port given with --port; the PostgreSQL StatefulSet: --pg-host/--pg-port),
and BIND_ADDR 0.0.0.0:<containerPort> becomes 127.0.0.1:<that port>. The databases and
roles get a prefix so the run cannot touch anything else on the shared server.

Writes into --work: plan.sh (bash arrays), rendered.yaml, ingress.json, upstreams.json,
init-databases.sh.
"""
from __future__ import annotations

import argparse
import base64
import json
import shlex
import sys
import urllib.parse
from pathlib import Path

from chartlib import RELEASE, SERVICES, label_selector_matches, pod_labels, render

START_ORDER = ["billing-service", "notification-service", "user-service", "order-service"]


class Plan:
    def __init__(self, rendered, ports: dict[str, int], pg_host: str, pg_port: int):
        self.r = rendered
        self.ports = ports
        self.pg = (pg_host, pg_port)

    def workload_endpoint(self, workload: dict, container_port: int) -> tuple[str, int]:
        if workload["kind"] == "StatefulSet" and workload["metadata"]["labels"]["app.kubernetes.io/component"] == "postgresql":
            assert container_port == 5432, container_port
            return self.pg
        component = workload["metadata"]["labels"]["app.kubernetes.io/component"]
        http_port = self.container_ports(workload)["http"]
        assert container_port == http_port, f"{component}: port {container_port} is not its http port"
        return "127.0.0.1", self.ports[component]

    @staticmethod
    def container_ports(workload: dict) -> dict:
        spec = workload["spec"]["template"]["spec"]
        return {p["name"]: p["containerPort"] for c in spec["containers"] for p in c.get("ports", [])}

    def service_endpoint(self, name: str, port) -> tuple[str, int]:
        """A Service name and port (number or name) -> the local address behind it."""
        service = self.r.get("Service", name)
        matches = [p for p in service["spec"]["ports"] if port in (p["port"], p.get("name"))]
        assert len(matches) == 1, f"Service {name} has no port {port}"
        target = matches[0]["targetPort"]
        workloads = [
            w for w in self.r.workloads()
            if label_selector_matches({"matchLabels": service["spec"]["selector"]}, pod_labels(w))
        ]
        assert len(workloads) == 1, f"Service {name} selects {len(workloads)} workloads"
        workload = workloads[0]
        container_port = self.container_ports(workload)[target] if isinstance(target, str) else target
        return self.workload_endpoint(workload, container_port)

    def translate_url(self, value: str) -> str:
        parsed = urllib.parse.urlsplit(value)
        if parsed.scheme not in ("http", "https", "postgres", "postgresql") or not parsed.hostname:
            return value
        if not self.r.find("Service", parsed.hostname):
            return value
        default_port = {"http": 80, "https": 443}.get(parsed.scheme, 5432)
        host, port = self.service_endpoint(parsed.hostname, parsed.port or default_port)
        userinfo = parsed.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
        return urllib.parse.urlunsplit(parsed._replace(netloc=netloc))

    def secret_value(self, ref: dict) -> str:
        secret = self.r.get("Secret", ref["name"])
        return base64.b64decode(secret["data"][ref["key"]]).decode()

    def env_of(self, container: dict, workload: dict) -> list[tuple[str, str]]:
        out = []
        for entry in container.get("env", []):
            if "value" in entry:
                value = str(entry["value"])
            else:
                value = self.secret_value(entry["valueFrom"]["secretKeyRef"])
            if entry["name"] == "BIND_ADDR":
                host, _, port = value.rpartition(":")
                assert host == "0.0.0.0", value
                local_host, local_port = self.workload_endpoint(workload, int(port))
                value = f"{local_host}:{local_port}"
            else:
                value = self.translate_url(value)
            out.append((entry["name"], value))
        return out

    def probe_urls(self, container: dict, workload: dict) -> list[tuple[str, str]]:
        ports = self.container_ports(workload)
        urls = []
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = container[probe]["httpGet"]
            port = ports[get["port"]] if isinstance(get["port"], str) else get["port"]
            host, local = self.workload_endpoint(workload, port)
            urls.append((probe, f"http://{host}:{local}{get['path']}"))
        return urls


def arr(name: str, items) -> str:
    return f"{name}=(" + " ".join(shlex.quote(str(i)) for i in items) + ")\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--port", action="append", default=[], help="<service>=<local port>, one per service")
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--db-prefix", default="helmrun_")
    args = parser.parse_args(argv)

    ports = {k: int(v) for k, v in (p.split("=", 1) for p in args.port)}
    assert set(ports) == set(SERVICES), f"--port for each of {sorted(SERVICES)}"

    # The chart's defaults, with prefixed database and role names.
    defaults = render().values["postgresql"]["databases"]
    databases = {
        key: {"database": args.db_prefix + db["database"], "role": args.db_prefix + db["role"]}
        for key, db in defaults.items()
    }
    rendered = render({"postgresql": {"databases": databases}})
    plan = Plan(rendered, ports, args.pg_host, args.pg_port)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    (work / "rendered.yaml").write_text(rendered.to_yaml())
    (work / "ingress.json").write_text(json.dumps(rendered.of_kind("Ingress"), indent=2))

    upstreams = {}
    for service in rendered.of_kind("Service"):
        if service["spec"].get("clusterIP") == "None":
            continue
        for p in service["spec"]["ports"]:
            host, port = plan.service_endpoint(service["metadata"]["name"], p["port"])
            for key in {p["port"], p.get("name")} - {None}:
                upstreams[f"{service['metadata']['name']}:{key}"] = f"{host}:{port}"
    (work / "upstreams.json").write_text(json.dumps(upstreams, indent=2, sort_keys=True))

    out = ["# Generated by tests/helm/local_plan.py from the rendered chart.\n"]
    out.append(arr("SERVICES", START_ORDER))
    out.append("declare -gA BINARY LOCAL_PORT\n")  # global even when sourced in a function
    for component in START_ORDER:
        workload = rendered.deployment_for(component)
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        command = container["command"]
        assert len(command) == 1 and command[0].startswith("/usr/local/bin/"), command
        assert "args" not in container
        var = component.replace("-", "_")
        out.append(f"BINARY[{component}]={shlex.quote(command[0].rsplit('/', 1)[1])}\n")
        out.append(f"LOCAL_PORT[{component}]={ports[component]}\n")
        out.append(arr(f"ENV_{var}", [f"{k}={v}" for k, v in plan.env_of(container, workload)]))
        out.append(arr(f"PROBES_{var}", [f"{probe} {url}" for probe, url in plan.probe_urls(container, workload)]))
        annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") == "true":
            port = int(annotations["prometheus.io/port"])
            host, local = plan.workload_endpoint(workload, port)
            out.append(f"METRICS_URL_{var}={shlex.quote(f'http://{host}:{local}' + annotations['prometheus.io/path'])}\n")

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
    out.append(arr("INIT_ENV", init_env))
    out.append(arr("DATABASES", [d["database"] for d in databases.values()]))
    out.append(arr("ROLES", [d["role"] for d in databases.values()]))
    for component, svc in SERVICES.items():
        env = dict(plan.env_of(rendered.deployment_for(component)["spec"]["template"]["spec"]["containers"][0],
                               rendered.deployment_for(component)))
        out.append(f"DB_URL_{component.replace('-', '_')}={shlex.quote(env['DATABASE_URL'])}\n")
    (work / "plan.sh").write_text("".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
