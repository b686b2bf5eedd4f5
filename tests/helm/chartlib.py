"""Renders and inspects the Helm chart in helm/ with Helm's own engine, offline.

helm-python-sdk embeds the Helm v4 Go SDK (libhelm_c) and renders exactly as
`helm template` / `helm install` do, with no cluster: `lookup` returns nothing.

    python tests/helm/chartlib.py [--set-json '{"postgresql": {"enabled": false}}'] > rendered.yaml
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import helm_python as helm
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "helm"
COLLECTION = REPO / "tests" / "postman" / "order-flow.postman_collection.json"
CHART_COLLECTION = CHART_DIR / "files" / "order-flow.postman_collection.json"
RELEASE = "arch"
NAMESPACE = "arch"
KUBE_VERSION = "1.30.0"
INGRESS_HOST = "arch.homework"

# What each binary reads (the services' contract): required, and optional tunables.
# billing- and notification-service call user-service for its public key (tokens).
SERVICES = {
    "user-service": {
        "values_key": "userService",
        "prefix": "/users",
        "docs": "/docs/users",
        "peers": {"BILLING_SERVICE_URL": "billing-service"},
        "own": {"AUTH_SIGNING_KEY_FILE", "TOKEN_TTL_SECONDS"},
        "optional": set(),
    },
    "billing-service": {
        "values_key": "billingService",
        "prefix": "/billing",
        "docs": "/docs/billing",
        "peers": {"USER_SERVICE_URL": "user-service"},
        "own": set(),
        "optional": set(),
    },
    "order-service": {
        "values_key": "orderService",
        "prefix": "/orders",
        "docs": "/docs/orders",
        "peers": {
            "USER_SERVICE_URL": "user-service",
            "BILLING_SERVICE_URL": "billing-service",
            "NOTIFICATION_SERVICE_URL": "notification-service",
        },
        "own": set(),
        "optional": {"HTTP_TIMEOUT_MS", "ORDER_BUDGET_MS", "RECOVERY_INTERVAL_MS"},
    },
    "notification-service": {
        "values_key": "notificationService",
        "prefix": "/notifications",
        "docs": "/docs/notifications",
        "peers": {"USER_SERVICE_URL": "user-service"},
        "own": set(),
        "optional": set(),
    },
}
COMMON_ENV = {
    "BIND_ADDR", "DATABASE_URL", "RUST_LOG", "DATABASE_POOL_SIZE",
    "SHUTDOWN_DRAIN_MS", "SHUTDOWN_TIMEOUT_MS", "INTERNAL_API_TOKEN",
}


def required_env(component: str) -> set[str]:
    return COMMON_ENV | set(SERVICES[component]["peers"]) | SERVICES[component]["own"]


@dataclass
class Rendered:
    """The objects of one render, with the template each came from."""

    objects: list[dict]
    sources: list[str]
    notes: str
    values: dict = field(default_factory=dict)

    def of_kind(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict:
        found = [o for o in self.objects if o["kind"] == kind and o["metadata"]["name"] == name]
        if len(found) != 1:
            raise KeyError(f"{kind}/{name}: {len(found)} rendered")
        return found[0]

    def find(self, kind: str, name: str) -> dict | None:
        found = [o for o in self.objects if o["kind"] == kind and o["metadata"]["name"] == name]
        return found[0] if found else None

    def workloads(self) -> list[dict]:
        return [o for o in self.objects if o["kind"] in ("Deployment", "StatefulSet")]

    def pod_specs(self) -> list[tuple[dict, dict]]:
        """(object, pod spec) of every workload and bare Pod."""
        out = []
        for o in self.objects:
            if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
                out.append((o, o["spec"]["template"]["spec"]))
            elif o["kind"] == "Pod":
                out.append((o, o["spec"]))
        return out

    def deployment_for(self, component: str) -> dict:
        return self.get("Deployment", f"{RELEASE}-{component}")

    def to_yaml(self) -> str:
        return "".join("---\n" + yaml.safe_dump(o, sort_keys=False) for o in self.objects)


def render(values: dict | None = None, *, release: str = RELEASE, namespace: str = NAMESPACE) -> Rendered:
    """Renders the chart as `helm install <release> ./helm -n <namespace>` would."""
    with helm.Chart.load(str(CHART_DIR)) as chart:
        merged = chart.merge_values(copy.deepcopy(values) if values else None)
        manifests = chart.render(
            copy.deepcopy(values) if values else None,
            name=release,
            namespace=namespace,
            is_install=True,
            revision=1,
        )
    objects, sources, notes = [], [], ""
    for path in sorted(manifests):
        text = manifests[path]
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append(doc)
                sources.append(path)
    return Rendered(objects, sources, notes, merged)


def lint(values: dict | None = None) -> dict:
    """`helm lint --strict` for Kubernetes 1.30 and namespace arch."""
    return helm.lint(
        str(CHART_DIR),
        copy.deepcopy(values) if values else None,
        strict=True,
        namespace=NAMESPACE,
        kube_version=f"v{KUBE_VERSION}",
    )


def label_selector_matches(selector: dict, labels: dict) -> bool:
    """A metav1.LabelSelector against a label set (an empty selector matches everything)."""
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def pod_labels(workload: dict) -> dict:
    if workload["kind"] == "Pod":
        return workload["metadata"].get("labels", {})
    return workload["spec"]["template"]["metadata"].get("labels", {})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Render helm/ offline (Helm's engine) to stdout.")
    parser.add_argument("--set-json", default=None, help="values as one JSON object")
    parser.add_argument("--release", default=RELEASE)
    parser.add_argument("--namespace", default=NAMESPACE)
    parser.add_argument("--notes", action="store_true", help="print NOTES.txt instead")
    args = parser.parse_args(argv)
    values = json.loads(args.set_json) if args.set_json else None
    rendered = render(values, release=args.release, namespace=args.namespace)
    sys.stdout.write(rendered.notes if args.notes else rendered.to_yaml())
    return 0


if __name__ == "__main__":
    sys.exit(main())
