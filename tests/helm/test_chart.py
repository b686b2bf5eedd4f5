"""Checks of the Helm chart in helm/, rendered offline with Helm's own engine.

Every rendered object is validated against the Kubernetes 1.30 schemas (strict), and the
chart's promises are asserted on the objects: names and labels, selectors, the binaries'
commands and exact environments, probes, resources, the restricted security context,
PostgreSQL (database and role per service, generated passwords kept across upgrades,
the external-database mode, existing Secrets instead of generated ones), the identity
feature's secrets, replicas with disruption budgets, rolling updates and the drain's
timing, the Ingress routes and the Gateway API HTTPRoute (validated against the Gateway
API's own schema), the NetworkPolicies (evaluated as a CNI would), and the helm test
pod with its copy of the Postman collection.
"""
from __future__ import annotations

import base64
import json
import re
import subprocess
import urllib.parse
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

import chartlib
from chartlib import (
    CHART_COLLECTION,
    CHART_DIR,
    COLLECTION,
    INGRESS_HOST,
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    SERVICES,
    label_selector_matches,
    pod_labels,
    render,
    required_env,
)
from netpol import Endpoint, Evaluator

EXTERNAL_DB = {
    "postgresql": {"enabled": False},
    "externalDatabase": {"existingSecret": "arch-databases"},
}
TUNED = {
    "userService": {"replicaCount": 3, "databasePoolSize": 4},
    "billingService": {"databasePoolSize": 6},
    "orderService": {"databasePoolSize": 8, "httpTimeoutMs": 1500, "orderBudgetMs": 4000, "recoveryIntervalMs": 5000},
    "notificationService": {"databasePoolSize": 2},
    "tests": {"ingressIP": "192.168.49.2"},
    "ingress": {"className": "traefik"},
    "imagePullSecrets": [{"name": "regcred"}],
    # The example of values.yaml: Prometheus' pods in namespace monitoring.
    "networkPolicy": {"metricsFrom": [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }]},
}
EXISTING_SECRETS = {
    "postgresql": {"existingSecret": "arch-db"},
    "auth": {"signingKey": {"existingSecret": "arch-keys"}, "internalApiToken": {"existingSecret": "arch-token"}},
}
GATEWAY = {
    "gateway": {"enabled": True, "parentRefs": [{"name": "eg", "namespace": "envoy-gateway-system"}]},
    "networkPolicy": {"gatewayFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "envoy-gateway-system"}}}]},
}
ONE_REPLICA = {key: {"replicaCount": 1} for key in ("userService", "billingService", "orderService", "notificationService")}
VARIANTS = {
    "default": {},
    "tuned": TUNED,
    "external-database": EXTERNAL_DB,
    "existing-secrets": EXISTING_SECRETS,
    "gateway": GATEWAY,
    "gateway-only": {**GATEWAY, "ingress": {"enabled": False, "className": None}},
    "one-replica": ONE_REPLICA,
    "no-ingress": {"ingress": {"enabled": False}},
    "minimal": {"networkPolicy": {"enabled": False}, "tests": {"enabled": False}, "serviceAccount": {"create": False, "name": "default"}},
    "no-persistence": {"postgresql": {"persistence": {"enabled": False}}},
}
PUBLIC_COMPONENTS = list(SERVICES)
# What the public host routes: (path, Ingress pathType, Service).
EXPECTED_ROUTES = {
    (path, "Prefix", f"{RELEASE}-{component}") for component, svc in SERVICES.items() for path in (svc["prefix"], svc["docs"])
} | {("/.well-known/jwks.json", "Exact", f"{RELEASE}-user-service")}
RESTRICTED_UID = 10001


@pytest.fixture(scope="module")
def renders() -> dict:
    return {name: render(values) for name, values in VARIANTS.items()}


@pytest.fixture(scope="module")
def default(renders):
    return renders["default"]


def effective(container: dict, pod_spec: dict, key: str):
    sc = container.get("securityContext") or {}
    if key in sc:
        return sc[key]
    return (pod_spec.get("securityContext") or {}).get(key)


def env_map(container: dict) -> dict:
    return {e["name"]: e for e in container.get("env", [])}


def secret_value(rendered, ref: dict) -> str:
    secret = rendered.get("Secret", ref["name"])
    return base64.b64decode(secret["data"][ref["key"]]).decode()


def service_selecting(rendered, workload: dict) -> list[dict]:
    labels = pod_labels(workload)
    return [s for s in rendered.of_kind("Service") if label_selector_matches({"matchLabels": s["spec"]["selector"]}, labels)]


def resolve_service_url(rendered, url: str) -> dict:
    """The Deployment behind http://<service>:<port> and the container port it lands on."""
    parsed = urllib.parse.urlsplit(url)
    assert parsed.scheme == "http" and parsed.path in ("", "/"), url
    service = rendered.get("Service", parsed.hostname)
    port = [p for p in service["spec"]["ports"] if p["port"] == parsed.port]
    assert len(port) == 1, f"{url}: Service {parsed.hostname} has no port {parsed.port}"
    targets = [
        w for w in rendered.workloads()
        if label_selector_matches({"matchLabels": service["spec"]["selector"]}, pod_labels(w))
    ]
    assert len(targets) == 1, f"{url}: Service selects {len(targets)} workloads"
    return {"workload": targets[0], "service": service, "port": port[0]}


# ---------------------------------------------------------------- lint and schemas

@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helm_lint_strict(variant):
    report = chartlib.lint(VARIANTS[variant])
    problems = [m for m in report["messages"] if m["severity"] >= 2] + [{"error": e} for e in report["errors"]]
    assert not problems, json.dumps(report, indent=2)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_object_is_valid_for_kubernetes_1_30(renders, variant):
    rendered = renders[variant]
    assert rendered.objects
    for obj in rendered.objects:
        if obj["apiVersion"].startswith("gateway.networking.k8s.io/"):
            continue  # not a Kubernetes API: test_httproute_is_valid_for_the_gateway_api
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            path = "/".join(str(p) for p in err.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {err.message}")


def test_schemas_are_offline_and_for_1_30():
    assert "1.30.0" in kubernetes_validate.utils.all_versions()


def test_values_schema_rejects_typos_and_bad_types():
    import helm_python as helm

    with helm.Chart.load(str(CHART_DIR)) as chart:
        chart.validate_schema({})
        chart.validate_schema(TUNED)
        for bad in (
            {"orderService": {"httpTimeout": 100}},
            {"userService": {"replicaCount": "two"}},
            {"postgresql": {"databases": {"userService": {"database": "Users; DROP", "role": "x"}}}},
            {"ingres": {}},
        ):
            with pytest.raises(helm.HelmError):
                chart.validate_schema(bad)


# ---------------------------------------------------------------- inventory, names, labels

def test_rendered_inventory(default):
    kinds = {}
    for obj in default.objects:
        kinds.setdefault(obj["kind"], []).append(obj["metadata"]["name"])
    assert sorted(kinds["Deployment"]) == sorted(f"{RELEASE}-{c}" for c in SERVICES)
    assert kinds["StatefulSet"] == [f"{RELEASE}-postgresql"]
    assert sorted(kinds["Service"]) == sorted(
        [f"{RELEASE}-{c}" for c in SERVICES] + [f"{RELEASE}-postgresql", f"{RELEASE}-postgresql-hl"]
    )
    assert sorted(kinds["Secret"]) == [f"{RELEASE}-internal-api-token", f"{RELEASE}-postgresql", f"{RELEASE}-signing-key"]
    assert sorted(kinds["PodDisruptionBudget"]) == sorted(f"{RELEASE}-{c}" for c in SERVICES)
    assert sorted(kinds["ConfigMap"]) == [f"{RELEASE}-postgresql-init", f"{RELEASE}-postman-collection"]
    assert kinds["Ingress"] == [RELEASE]
    assert kinds["ServiceAccount"] == [RELEASE]
    assert kinds["Pod"] == [f"{RELEASE}-test-order-flow"]
    assert len(kinds["NetworkPolicy"]) == 8
    assert set(kinds) == {
        "Deployment", "StatefulSet", "Service", "Secret", "ConfigMap", "Ingress",
        "ServiceAccount", "Pod", "NetworkPolicy", "PodDisruptionBudget",
    }


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_names_namespace_and_labels(renders, variant):
    rendered = renders[variant]
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    for obj in rendered.objects:
        meta = obj["metadata"]
        what = f"{obj['kind']}/{meta['name']}"
        assert meta["namespace"] == NAMESPACE, what
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", meta["name"]), what
        labels = meta["labels"]
        assert labels["app.kubernetes.io/name"] == "order-system", what
        assert labels["app.kubernetes.io/instance"] == RELEASE, what
        assert labels["app.kubernetes.io/managed-by"] == "Helm", what
        assert labels["app.kubernetes.io/part-of"] == "order-system", what
        assert labels["app.kubernetes.io/version"] == chart["appVersion"], what
        assert labels["helm.sh/chart"] == f"order-system-{chart['version']}", what


def test_release_name_prefixes_every_name():
    other = render(release="shop")
    for obj in other.objects:
        assert obj["metadata"]["name"].startswith("shop"), obj["metadata"]["name"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == "shop"
    order = other.get("Deployment", "shop-order-service")["spec"]["template"]["spec"]["containers"][0]
    assert env_map(order)["USER_SERVICE_URL"]["value"] == "http://shop-user-service:8080"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_selectors_are_stable_and_match_their_pods(renders, variant):
    rendered = renders[variant]
    workloads = rendered.workloads()
    for w in workloads:
        selector = w["spec"]["selector"]
        labels = pod_labels(w)
        assert label_selector_matches(selector, labels), w["metadata"]["name"]
        assert set(selector["matchLabels"]) == {
            "app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"
        }, "selectors must not carry labels that change between releases"
        others = [o for o in workloads if o is not w and label_selector_matches(selector, pod_labels(o))]
        assert not others, f"{w['metadata']['name']} selects pods of {[o['metadata']['name'] for o in others]}"
    for service in rendered.of_kind("Service"):
        selected = [w for w in workloads if label_selector_matches({"matchLabels": service["spec"]["selector"]}, pod_labels(w))]
        assert len(selected) == 1, f"Service {service['metadata']['name']} selects {len(selected)} workloads"
        container_ports = {p.get("name"): p["containerPort"] for c in selected[0]["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            assert (target in container_ports) if isinstance(target, str) else (target in container_ports.values()), (
                f"Service {service['metadata']['name']} targets port {target} that its pods do not have"
            )


# ---------------------------------------------------------------- containers

@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_container_has_resources_and_the_restricted_security_context(renders, variant):
    rendered = renders[variant]
    for obj, spec in rendered.pod_specs():
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
        assert spec.get("automountServiceAccountToken") is False, obj["metadata"]["name"]
        assert not any("hostPath" in v for v in spec.get("volumes", []))
        for c in spec.get("initContainers", []) + spec["containers"]:
            what = f"{obj['kind']}/{obj['metadata']['name']}/{c['name']}"
            res = c.get("resources") or {}
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(kind, {})), f"{what}: resources.{kind}"
            sc = c.get("securityContext") or {}
            assert effective(c, spec, "runAsNonRoot") is True, what
            uid = effective(c, spec, "runAsUser")
            assert isinstance(uid, int) and uid > 0, what
            if obj["kind"] != "StatefulSet":
                assert uid == RESTRICTED_UID, what
            assert sc.get("readOnlyRootFilesystem") is True, what
            assert sc.get("allowPrivilegeEscalation") is False, what
            assert not sc.get("privileged"), what
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], what
            assert not sc.get("capabilities", {}).get("add"), what
            seccomp = effective(c, spec, "seccompProfile") or {}
            assert seccomp.get("type") == "RuntimeDefault", what
            image = c["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"{what}: unpinned image {image}"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_workloads_have_startup_liveness_and_readiness_probes(renders, variant):
    for w in renders[variant].workloads():
        for c in w["spec"]["template"]["spec"]["containers"]:
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert probe in c, f"{w['metadata']['name']}/{c['name']}: no {probe}"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_service_deployments_run_their_binary_with_health_probes(renders, variant):
    rendered = renders[variant]
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    for component in SERVICES:
        d = rendered.deployment_for(component)
        spec = d["spec"]["template"]["spec"]
        assert len(spec["containers"]) == 1
        c = spec["containers"][0]
        assert c["command"] == [f"/usr/local/bin/{component}"]
        assert "args" not in c
        assert c["image"] == f"order-system:{chart['appVersion']}"
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {"http": 8080}
        assert c["startupProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
        assert c["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
        writable = {m["mountPath"] for m in c.get("volumeMounts", []) if not m.get("readOnly")}
        assert writable == {"/tmp"}, "the services write nothing to disk but a scratch /tmp"
        annotations = d["spec"]["template"]["metadata"].get("annotations", {})
        assert annotations.get("prometheus.io/path") == "/metrics"
        assert annotations.get("prometheus.io/port") == "8080"


def test_replicas_and_tunables_come_from_values(renders):
    tuned = renders["tuned"]
    assert tuned.deployment_for("user-service")["spec"]["replicas"] == 3
    for component in SERVICES:
        assert renders["default"].deployment_for(component)["spec"]["replicas"] == 2, component
    order = env_map(tuned.deployment_for("order-service")["spec"]["template"]["spec"]["containers"][0])
    assert order["HTTP_TIMEOUT_MS"]["value"] == "1500"
    assert order["ORDER_BUDGET_MS"]["value"] == "4000"
    assert order["RECOVERY_INTERVAL_MS"]["value"] == "5000"
    assert order["DATABASE_POOL_SIZE"]["value"] == "8"
    for obj, spec in tuned.pod_specs():
        assert spec.get("imagePullSecrets") == [{"name": "regcred"}], obj["metadata"]["name"]


# ---------------------------------------------------------------- environment

@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_env_names_are_exactly_what_each_binary_reads(renders, variant):
    rendered = renders[variant]
    tuned = variant == "tuned"
    for component, svc in SERVICES.items():
        c = rendered.deployment_for(component)["spec"]["template"]["spec"]["containers"][0]
        names = [e["name"] for e in c["env"]]
        assert len(names) == len(set(names)), f"{component}: duplicate env"
        expected = required_env(component) | (svc["optional"] if tuned else set())
        assert set(names) == expected, f"{component}: {sorted(names)} != {sorted(expected)}"
        assert "envFrom" not in c


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_env_values(renders, variant):
    rendered = renders[variant]
    for component, svc in SERVICES.items():
        c = rendered.deployment_for(component)["spec"]["template"]["spec"]["containers"][0]
        env = env_map(c)
        assert env["BIND_ADDR"]["value"] == "0.0.0.0:8080"
        assert env["RUST_LOG"]["value"] == "info"
        # Secrets only ever come from Secrets.
        assert "value" not in env["DATABASE_URL"] and "value" not in env["INTERNAL_API_TOKEN"]
        token_secret = "arch-token" if variant == "existing-secrets" else f"{RELEASE}-internal-api-token"
        assert env["INTERNAL_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": token_secret, "key": "internal-api-token"}
        ref = env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        if variant == "external-database":
            assert ref == {"name": "arch-databases", "key": f"{component}-database-url"}
        elif variant == "existing-secrets":
            assert ref == {"name": "arch-db", "key": f"{component}-database-url"}
        else:
            url = urllib.parse.urlsplit(secret_value(rendered, ref))
            db = rendered.values["postgresql"]["databases"][svc["values_key"]]
            assert url.scheme == "postgres"
            assert url.hostname == f"{RELEASE}-postgresql" and url.port == 5432
            assert url.username == db["role"] and url.path == "/" + db["database"]
            password = secret_value(rendered, {"name": ref["name"], "key": f"{component}-password"})
            assert urllib.parse.unquote(url.password) == password
            target = resolve_service_url(rendered, f"http://{url.hostname}:{url.port}")
            assert target["workload"]["kind"] == "StatefulSet"
        # Peer URLs: the peer's Service DNS name and port, landing on the peer's http port.
        for var, peer in svc["peers"].items():
            url = env[var]["value"]
            assert url == f"http://{RELEASE}-{peer}:8080"
            target = resolve_service_url(rendered, url)
            assert target["workload"]["metadata"]["name"] == f"{RELEASE}-{peer}"
            assert target["port"]["targetPort"] == "http"


def test_database_url_keys_of_the_external_secret_are_configurable():
    values = json.loads(json.dumps(EXTERNAL_DB))
    values["externalDatabase"]["secretKeys"] = {"orderService": "orders"}
    rendered = render(values)
    c = rendered.deployment_for("order-service")["spec"]["template"]["spec"]["containers"][0]
    assert env_map(c)["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "arch-databases", "key": "orders"}


def test_external_database_needs_the_existing_secret():
    import helm_python as helm

    with pytest.raises(helm.HelmError, match="externalDatabase.existingSecret is required"):
        render({"postgresql": {"enabled": False}})


# ---------------------------------------------------------------- PostgreSQL

def test_postgresql_statefulset(default):
    sts = default.get("StatefulSet", f"{RELEASE}-postgresql")
    spec = sts["spec"]
    assert spec["replicas"] == 1
    headless = default.get("Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    c = spec["template"]["spec"]["containers"][0]
    repo, tag = c["image"].rsplit(":", 1)
    assert repo == "docker.io/library/postgres", "the official image"
    assert re.fullmatch(r"\d+\.\d+(-[a-z]+)?", tag), f"pinned tag, not {tag}"
    claims = {t["metadata"]["name"]: t for t in spec["volumeClaimTemplates"]}
    assert claims["data"]["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert claims["data"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["data"]["mountPath"] == "/var/lib/postgresql/data"
    env = env_map(c)
    assert env["PGDATA"]["value"].startswith("/var/lib/postgresql/data/"), "a subdirectory of the volume (lost+found)"
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": f"{RELEASE}-postgresql", "key": "postgres-password"}
    # The init script: a ConfigMap mounted where the image's entrypoint runs it.
    assert mounts["init-scripts"]["mountPath"] == "/docker-entrypoint-initdb.d"
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert volumes["init-scripts"]["configMap"]["name"] == f"{RELEASE}-postgresql-init"
    # Every writable path of the read-only container is a volume.
    assert {"data", "run", "tmp", "dshm"} <= set(mounts)
    for component in SERVICES:
        var = component.upper().replace("-", "_") + "_DB_PASSWORD"
        assert env[var]["valueFrom"]["secretKeyRef"] == {"name": f"{RELEASE}-postgresql", "key": f"{component}-password"}
    probe = c["readinessProbe"]["exec"]["command"]
    assert probe[0] == "pg_isready"


def test_postgresql_without_persistence_uses_an_emptydir(renders):
    sts = renders["no-persistence"].get("StatefulSet", f"{RELEASE}-postgresql")
    assert "volumeClaimTemplates" not in sts["spec"]
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes["data"]


def test_init_script_creates_one_database_and_role_per_service(default, tmp_path):
    cm = default.get("ConfigMap", f"{RELEASE}-postgresql-init")
    (name, script), = cm["data"].items()
    assert name.endswith(".sh")
    sts = default.get("StatefulSet", f"{RELEASE}-postgresql")
    mode = [v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "init-scripts"][0]["configMap"]["defaultMode"]
    assert mode & 0o111, "executable, so the entrypoint runs it rather than sourcing it"
    path = tmp_path / name
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)
    calls = re.findall(r"^create_service_database (\S+) (\S+) (\S+)$", script, re.M)
    expected = {
        (db["role"], db["database"], component.upper().replace("-", "_") + "_DB_PASSWORD")
        for component, svc in SERVICES.items()
        for db in [default.values["postgresql"]["databases"][svc["values_key"]]]
    }
    assert set(calls) == expected
    assert "\\getenv password" in script, "passwords never appear in a command line"


def test_passwords_are_generated_and_kept_on_upgrade(default):
    secret = default.get("Secret", f"{RELEASE}-postgresql")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    keys = {"postgres-password"} | {f"{c}-password" for c in SERVICES} | {f"{c}-database-url" for c in SERVICES}
    assert set(data) == keys
    passwords = [v for k, v in data.items() if k.endswith("-password")]
    assert all(re.fullmatch(r"[A-Za-z0-9]{32}", p) for p in passwords)
    assert len(set(passwords)) == len(passwords)
    # Generated per install (offline, lookup finds nothing) ...
    again = render().get("Secret", f"{RELEASE}-postgresql")
    assert again["data"]["postgres-password"] != secret["data"]["postgres-password"]
    # ... and read back from the existing Secret on upgrade.
    template = (CHART_DIR / "templates" / "postgresql-secret.yaml").read_text()
    assert re.search(r'lookup "v1" "Secret" \.Release\.Namespace \$secretName', template)
    assert template.count("b64dec") == 2 and template.count("randAlphaNum") == 2
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_external_database_mode_deploys_no_postgresql(renders):
    rendered = renders["external-database"]
    names = {(o["kind"], o["metadata"]["name"]) for o in rendered.objects}
    assert not any("postgresql" in name for _, name in names), names
    assert not rendered.of_kind("StatefulSet")
    assert sorted(s["metadata"]["name"] for s in rendered.of_kind("Secret")) == [
        f"{RELEASE}-internal-api-token", f"{RELEASE}-signing-key"
    ]


# ---------------------------------------------------------------- Ingress and HTTPRoute

def ingress_route(rendered, path: str) -> str | None:
    """The Service a request path reaches through the Ingress, matched as Kubernetes defines it:
    Exact or Prefix by whole path elements, the longest match first, Exact before Prefix."""
    def elements(p):
        return [e for e in p.split("/") if e]
    matches = []
    for ingress in rendered.of_kind("Ingress"):
        for rule in ingress["spec"]["rules"]:
            if rule["host"] != INGRESS_HOST:
                continue
            for p in rule["http"]["paths"]:
                if p["pathType"] == "Exact" and path == p["path"]:
                    matches.append((len(p["path"]), 1, p["backend"]["service"]["name"]))
                elif p["pathType"] == "Prefix" and elements(path)[: len(elements(p["path"]))] == elements(p["path"]):
                    matches.append((len(p["path"].rstrip("/")), 0, p["backend"]["service"]["name"]))
    return max(matches)[2] if matches else None


@pytest.mark.parametrize("variant", ["default", "tuned", "external-database"])
def test_ingress_routes_public_prefixes_and_docs_only(renders, variant):
    rendered = renders[variant]
    (ingress,) = rendered.of_kind("Ingress")
    spec = ingress["spec"]
    assert spec["ingressClassName"] == ("traefik" if variant == "tuned" else "nginx")
    assert [r["host"] for r in spec["rules"]] == [INGRESS_HOST]
    paths = spec["rules"][0]["http"]["paths"]
    assert {(p["path"], p["pathType"], p["backend"]["service"]["name"]) for p in paths} == EXPECTED_ROUTES
    for p in paths:
        service = rendered.get("Service", p["backend"]["service"]["name"])
        assert p["backend"]["service"]["port"]["name"] in {sp["name"] for sp in service["spec"]["ports"]}
        assert not p["path"].startswith(("/internal", "/health", "/metrics"))
    assert "defaultBackend" not in spec
    # Requests as a client sends them, matched the way Kubernetes defines it.
    for path, component in {
        "/users": "user-service",
        "/users/42": "user-service",
        "/billing/accounts/42/deposit": "billing-service",
        "/orders": "order-service",
        "/orders/7": "order-service",
        "/notifications": "notification-service",
        "/docs/users/": "user-service",
        "/docs/billing/openapi.json": "billing-service",
        "/docs/orders/": "order-service",
        "/docs/notifications/openapi.json": "notification-service",
        "/.well-known/jwks.json": "user-service",
    }.items():
        assert ingress_route(rendered, path) == f"{RELEASE}-{component}", path
    for path in (
        "/internal/billing/accounts",
        "/internal/billing/accounts/1/withdraw",
        "/internal/notifications",
        "/health/live",
        "/health/ready",
        "/metrics",
        "/",
        "/docs/",
        "/usersx",
        "/.well-known/jwks.json/x",
        "/.well-known/openid-configuration",
    ):
        assert ingress_route(rendered, path) is None, f"{path} must not be routed"


def test_no_ingress_when_disabled(renders):
    assert not renders["no-ingress"].of_kind("Ingress")
    assert "port-forward" in renders["no-ingress"].notes


def test_ingress_class_null_leaves_it_to_the_cluster_default():
    (ingress,) = render({"ingress": {"className": None}}).of_kind("Ingress")
    assert "ingressClassName" not in ingress["spec"]
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert values["ingress"]["className"] == "nginx"


@pytest.mark.parametrize("variant", ["gateway", "gateway-only"])
def test_httproute_has_the_ingress_routes(renders, variant):
    rendered = renders[variant]
    (route,) = rendered.of_kind("HTTPRoute")
    spec = route["spec"]
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert spec["parentRefs"] == [{"name": "eg", "namespace": "envoy-gateway-system"}]
    assert spec["hostnames"] == [INGRESS_HOST]
    routes = set()
    for rule in spec["rules"]:
        (backend,) = rule["backendRefs"]
        target = resolve_service_url(rendered, f"http://{backend['name']}:{backend['port']}")
        assert target["port"]["targetPort"] == "http"
        for match in rule["matches"]:
            assert set(match) == {"path"}, "paths only: no header or method conditions"
            kind = {"PathPrefix": "Prefix", "Exact": "Exact"}[match["path"]["type"]]
            routes.add((match["path"]["value"], kind, backend["name"]))
    assert routes == EXPECTED_ROUTES
    assert not any(p.startswith(("/internal", "/health", "/metrics")) for p, _, _ in routes)
    assert bool(rendered.of_kind("Ingress")) == (variant == "gateway")
    assert not renders["default"].of_kind("HTTPRoute")


def test_httproute_is_valid_for_the_gateway_api(renders):
    """Validated with the Gateway API's own schema (@kubernetes-models/gateway-api, pinned in
    package.json: generated from the API's Go types and their validation markers, as the CRD is)."""
    script = """
        import { HTTPRoute } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute";
        import { readFileSync } from "node:fs";
        for (const obj of JSON.parse(readFileSync(0, "utf8"))) new HTTPRoute(obj).validate();
    """
    def validate(objects):
        return subprocess.run(["node", "--input-type=module", "-e", script], input=json.dumps(objects),
                              capture_output=True, text=True, cwd=chartlib.REPO)
    (route,) = renders["gateway"].of_kind("HTTPRoute")
    done = validate([route])
    assert done.returncode == 0, done.stderr
    # The schema really is applied: a wrong path type and a bad hostname are refused.
    broken = json.loads(json.dumps(route))
    broken["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Prefix"
    broken["spec"]["hostnames"] = ["Arch_Homework"]
    done = validate([broken])
    assert done.returncode != 0 and "must be equal to one of the allowed values" in done.stderr, done.stderr


def test_httproute_needs_its_gateway_and_its_network_peers():
    import helm_python as helm

    with pytest.raises(helm.HelmError, match="gateway.parentRefs is required"):
        render({"gateway": {"enabled": True}, "networkPolicy": GATEWAY["networkPolicy"]})
    with pytest.raises(helm.HelmError, match="networkPolicy.gatewayFrom is required"):
        render({"gateway": GATEWAY["gateway"]})
    render({"gateway": GATEWAY["gateway"], "networkPolicy": {"enabled": False}})


# ---------------------------------------------------------------- NetworkPolicies

def endpoints(rendered) -> dict:
    eps = {}
    for w in rendered.workloads():
        spec = w["spec"]["template"]["spec"]
        ports = {p["name"]: p["containerPort"] for c in spec["containers"] for p in c.get("ports", []) if "name" in p}
        eps[w["metadata"]["labels"]["app.kubernetes.io/component"]] = Endpoint(
            w["metadata"]["name"], NAMESPACE, pod_labels(w), ports, "10.244.0.10"
        )
    for pod in rendered.of_kind("Pod"):
        eps["tests"] = Endpoint(pod["metadata"]["name"], NAMESPACE, pod_labels(pod), {}, "10.244.0.11")
    eps["ingress-controller"] = Endpoint(
        "ingress-nginx-controller", "ingress-nginx",
        {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"},
        {"http": 80, "https": 443}, "10.244.0.2",
    )
    eps["dns"] = Endpoint("coredns", "kube-system", {"k8s-app": "kube-dns"}, {"dns": 53}, "10.244.0.3")
    eps["stranger"] = Endpoint("stranger", NAMESPACE, {"app": "something-else"}, {"http": 8080}, "10.244.0.20")
    eps["other-namespace"] = Endpoint("other", "default", {}, {}, "10.244.0.21")
    eps["prometheus"] = Endpoint("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"}, {}, "10.244.0.22")
    eps["monitoring-other"] = Endpoint("grafana", "monitoring", {"app.kubernetes.io/name": "grafana"}, {}, "10.244.0.23")
    eps["gateway-proxy"] = Endpoint("envoy", "envoy-gateway-system", {"app": "envoy"}, {}, "10.244.0.24")
    eps["internet"] = Endpoint("internet", None, ip="203.0.113.10")
    eps["minikube-node"] = Endpoint("node", None, ip="192.168.49.2")
    return eps


@pytest.mark.parametrize("variant", ["default", "tuned"])
def test_network_policies(renders, variant):
    rendered = renders[variant]
    ev = Evaluator(rendered.of_kind("NetworkPolicy"))
    ep = endpoints(rendered)
    services = list(SERVICES)
    callers = {
        ("order-service", "user-service"),
        ("order-service", "billing-service"),
        ("order-service", "notification-service"),
        ("user-service", "billing-service"),
        # The public key (GET /.well-known/jwks.json) to verify tokens with.
        ("billing-service", "user-service"),
        ("notification-service", "user-service"),
    }
    for dst in services:
        # The ingress controller reaches every public port; strangers reach nothing.
        assert ev.allowed(ep["ingress-controller"], ep[dst], "http"), dst
        assert not ev.allowed(ep["stranger"], ep[dst], "http"), dst
        assert not ev.allowed(ep["other-namespace"], ep[dst], "http"), dst
        assert not ev.allowed(ep["tests"], ep[dst], "http"), f"the test pod goes through the ingress, not to {dst}"
        assert ev.allowed(ep["prometheus"], ep[dst], "http") == (variant == "tuned"), dst
        assert not ev.allowed(ep["monitoring-other"], ep[dst], "http"), f"only Prometheus' pods scrape {dst}"
        assert not ev.allowed(ep["gateway-proxy"], ep[dst], "http"), f"no Gateway admitted to {dst} by default"
        for src in services:
            if src != dst:
                assert ev.allowed(ep[src], ep[dst], "http") == ((src, dst) in callers), f"{src} -> {dst}"
    for src in services:
        assert ev.allowed(ep[src], ep["postgresql"], "postgresql"), f"{src} -> postgresql"
        assert ev.allowed(ep[src], ep["dns"], 53, "UDP") and ev.allowed(ep[src], ep["dns"], 53, "TCP")
        assert not ev.allowed(ep[src], ep["internet"], 443), f"{src} -> internet"
        assert not ev.allowed(ep[src], ep["internet"], 5432), f"{src} -> outside database"
        assert not ev.allowed(ep[src], ep["ingress-controller"], 80)
    for who in ("ingress-controller", "stranger", "tests"):
        assert not ev.allowed(ep[who], ep["postgresql"], "postgresql"), f"{who} -> postgresql"
    for dst in services + ["internet"]:
        assert not ev.allowed(ep["postgresql"], ep[dst], 8080), f"postgresql -> {dst}"
    assert ev.allowed(ep["postgresql"], ep["dns"], 53, "UDP")
    # The helm test pod: to the ingress controller (pod, or node address when given) and DNS only.
    assert ev.allowed(ep["tests"], ep["ingress-controller"], 80)
    assert ev.allowed(ep["tests"], ep["minikube-node"], 80) == (variant == "tuned")
    assert not ev.allowed(ep["tests"], ep["internet"], 80)
    assert not ev.allowed(ep["stranger"], ep["tests"], 8080)


def test_network_policies_with_an_external_database(renders):
    rendered = renders["external-database"]
    ev = Evaluator(rendered.of_kind("NetworkPolicy"))
    ep = endpoints(rendered)
    for src in SERVICES:
        assert ev.allowed(ep[src], ep["internet"], 5432), f"{src} -> managed database"
        assert not ev.allowed(ep[src], ep["internet"], 443)
    restricted = render({**EXTERNAL_DB, "networkPolicy": {"externalDatabaseTo": [{"ipBlock": {"cidr": "10.10.0.0/16"}}]}})
    ev = Evaluator(restricted.of_kind("NetworkPolicy"))
    db = Endpoint("managed-db", None, ip="10.10.1.5")
    for src in SERVICES:
        assert ev.allowed(ep[src], db, 5432)
        assert not ev.allowed(ep[src], ep["internet"], 5432)


def test_network_policies_admit_the_gateway_proxies(renders):
    rendered = renders["gateway"]
    ev = Evaluator(rendered.of_kind("NetworkPolicy"))
    ep = endpoints(rendered)
    for dst in SERVICES:
        assert ev.allowed(ep["gateway-proxy"], ep[dst], "http"), dst
        assert not ev.allowed(ep["gateway-proxy"], ep["postgresql"], "postgresql")


def test_network_policies_can_be_disabled(renders):
    assert not renders["minimal"].of_kind("NetworkPolicy")


def test_default_deny_covers_every_pod_of_the_release(default):
    deny = default.get("NetworkPolicy", f"{RELEASE}-default-deny")
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    for obj, _ in default.pod_specs():
        assert label_selector_matches(deny["spec"]["podSelector"], pod_labels(obj)), obj["metadata"]["name"]


# ---------------------------------------------------------------- helm test

def test_collection_copy_is_byte_identical():
    assert COLLECTION.is_file(), f"{COLLECTION} is missing"
    assert CHART_COLLECTION.is_file(), f"copy it: cp {COLLECTION.relative_to(chartlib.REPO)} {CHART_COLLECTION.relative_to(chartlib.REPO)}"
    assert CHART_COLLECTION.read_bytes() == COLLECTION.read_bytes(), (
        f"{CHART_COLLECTION.relative_to(chartlib.REPO)} differs from {COLLECTION.relative_to(chartlib.REPO)}: "
        f"cp {COLLECTION.relative_to(chartlib.REPO)} {CHART_COLLECTION.relative_to(chartlib.REPO)}"
    )


def test_collection_configmap_carries_the_exact_bytes(default):
    cm = default.get("ConfigMap", f"{RELEASE}-postman-collection")
    assert set(cm["data"]) == {"order-flow.postman_collection.json"}
    assert cm["data"]["order-flow.postman_collection.json"].encode("utf-8") == COLLECTION.read_bytes()
    assert "annotations" not in cm["metadata"] or "helm.sh/hook" not in cm["metadata"]["annotations"]


@pytest.mark.parametrize("variant", ["default", "tuned"])
def test_helm_test_pod_runs_newman_through_the_ingress(renders, variant):
    rendered = renders[variant]
    pod = rendered.get("Pod", f"{RELEASE}-test-order-flow")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert "before-hook-creation" in pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    (c,) = spec["containers"]
    repo, tag = c["image"].rsplit(":", 1)
    assert repo == "docker.io/postman/newman"
    package = json.loads((chartlib.REPO / "package.json").read_text())
    assert tag.split("-")[0] == package["devDependencies"]["newman"], "the newman version the repository pins"
    volumes = {v["name"]: v for v in spec["volumes"]}
    mount = [m for m in c["volumeMounts"] if volumes[m["name"]].get("configMap")][0]
    assert volumes[mount["name"]]["configMap"]["name"] == f"{RELEASE}-postman-collection"
    if variant == "tuned":
        assert spec["hostAliases"] == [{"ip": "192.168.49.2", "hostnames": [INGRESS_HOST]}]
        assert c["command"] == ["newman"]
        assert c["args"][:2] == ["run", f"{mount['mountPath']}/order-flow.postman_collection.json"]
        assert c["args"][c["args"].index("--env-var") + 1] == f"baseUrl=http://{INGRESS_HOST}"
    else:
        # Rendered offline: no ingress controller to look up, so the pod says what to do.
        assert "hostAliases" not in spec
        assert c["command"][:2] == ["/bin/sh", "-c"] and "tests.ingressIP" in c["command"][2]
        assert "exit 1" in c["command"][2]


def test_test_pod_looks_up_the_ingress_controller():
    helpers = (CHART_DIR / "templates" / "_helpers.tpl").read_text()
    assert re.search(r'lookup "v1" "Service" \.Values\.tests\.ingressControllerService\.namespace', helpers)


def test_tests_can_be_disabled(renders):
    rendered = renders["minimal"]
    assert not rendered.of_kind("Pod")
    assert not rendered.find("ConfigMap", f"{RELEASE}-postman-collection")
    assert not rendered.of_kind("ServiceAccount")
    for component in SERVICES:
        assert rendered.deployment_for(component)["spec"]["template"]["spec"]["serviceAccountName"] == "default"


# ---------------------------------------------------------------- chart metadata, values, notes

def test_chart_metadata():
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["type"] == "application"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    cargo = (chartlib.REPO / "Cargo.toml").read_text()
    workspace_version = re.search(r'^\[workspace\.package\][^\[]*?^version\s*=\s*"([^"]+)"', cargo, re.M | re.S).group(1)
    assert chart["appVersion"] == workspace_version, "appVersion (the default image tag) follows the workspace version"


def _keys(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield path + (key,)
            if not (path and path[-1] in FREE_FORM) and key not in FREE_FORM:
                yield from _keys(value, path + (key,))


FREE_FORM = {
    "podAnnotations", "podLabels", "nodeSelector", "affinity", "tolerations", "annotations",
    "commonLabels", "matchLabels", "resources", "podSecurityContext", "securityContext",
    "requests", "limits", "capabilities", "seccompProfile",
}


def test_values_are_camel_case_and_documented():
    text = (CHART_DIR / "values.yaml").read_text()
    values = yaml.safe_load(text)
    for key_path in _keys(values):
        key = key_path[-1]
        if len(key_path) > 1 and key_path[-2] in FREE_FORM:
            continue
        assert re.fullmatch(r"[a-z][a-zA-Z0-9]*", key), f"{'.'.join(key_path)} is not camelCase"
    # Every key of the first two levels is documented by a comment right above it
    # (the content of free-form maps such as securityContext excepted).
    lines = text.splitlines()
    stack: list[tuple[int, str]] = []
    previous = ""
    for number, line in enumerate(lines, 1):
        m = re.match(r"^(\s*)([A-Za-z][\w./-]*):", line)
        if m:
            indent = len(m.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            parents = [k for _, k in stack]
            stack.append((indent, m.group(2)))
            if indent <= 2 and not any(p in FREE_FORM for p in parents):
                assert previous.startswith("#"), f"values.yaml line {number}: {line.strip()} has no comment above it"
        if line.strip():
            previous = line.strip()
    readme = (CHART_DIR / "README.md").read_text()
    for key in values:
        assert f"`{key}" in readme, f"helm/README.md does not document {key}"


def test_notes_tell_how_to_reach_the_system(default):
    notes = default.notes
    assert "/etc/hosts" in notes and INGRESS_HOST in notes
    assert "minikube ip" in notes
    assert f"helm test {RELEASE} -n {NAMESPACE}" in notes
    for svc in SERVICES.values():
        assert f"http://{INGRESS_HOST}{svc['docs']}/" in notes


def test_rendering_is_silent_about_missing_values(default):
    text = default.to_yaml()
    assert "<no value>" not in text and "%!" not in text


# ---------------------------------------------------------------- replicas, rollouts and the drain

def readiness_notice_ms(container: dict) -> int:
    probe = container["readinessProbe"]
    return probe["periodSeconds"] * probe["failureThreshold"] * 1000


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rollouts_keep_ready_pods_and_spread_softly(renders, variant):
    for component in SERVICES:
        d = renders[variant].deployment_for(component)
        assert d["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
        (spread,) = d["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert spread["whenUnsatisfiable"] == "ScheduleAnyway" and spread["topologyKey"] == "kubernetes.io/hostname"
        assert spread["labelSelector"] == d["spec"]["selector"]


def test_topology_spread_can_be_replaced():
    own = [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "order-service"}}}]
    rendered = render({"orderService": {"topologySpreadConstraints": own}, "topologySpread": {"enabled": False}})
    assert rendered.deployment_for("order-service")["spec"]["template"]["spec"]["topologySpreadConstraints"] == own
    assert "topologySpreadConstraints" not in rendered.deployment_for("user-service")["spec"]["template"]["spec"]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_disruption_budget_for_every_replicated_service(renders, variant):
    rendered = renders[variant]
    budgets = {b["metadata"]["name"]: b for b in rendered.of_kind("PodDisruptionBudget")}
    for component in SERVICES:
        d = rendered.deployment_for(component)
        budget = budgets.pop(d["metadata"]["name"], None)
        if d["spec"]["replicas"] < 2:
            assert budget is None, f"{component}: one replica would only block node drains"
            continue
        assert budget["spec"]["maxUnavailable"] == 1
        assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        assert budget["spec"]["selector"] == d["spec"]["selector"]
    assert not budgets, f"budgets for nothing: {sorted(budgets)}"
    assert (variant == "one-replica") == (not rendered.of_kind("PodDisruptionBudget"))


def test_a_disruption_budget_can_count_available_pods():
    rendered = render({"podDisruptionBudget": {"minAvailable": "50%"}})
    for budget in rendered.of_kind("PodDisruptionBudget"):
        assert budget["spec"]["minAvailable"] == "50%" and "maxUnavailable" not in budget["spec"]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_drain_outlasts_readiness_and_the_grace_period_outlasts_both(renders, variant):
    for obj, spec in renders[variant].pod_specs():
        for c in spec["containers"]:
            lifecycle = json.dumps(c.get("lifecycle", {}))
            assert "sleep" not in lifecycle and "/bin/sh" not in lifecycle, f"{obj['metadata']['name']}: the image has no shell"
        if obj["kind"] != "Deployment":
            continue
        (c,) = spec["containers"]
        env = env_map(c)
        drain, bound = int(env["SHUTDOWN_DRAIN_MS"]["value"]), int(env["SHUTDOWN_TIMEOUT_MS"]["value"])
        assert drain > readiness_notice_ms(c), f"{obj['metadata']['name']}: drain {drain} ms"
        assert spec["terminationGracePeriodSeconds"] * 1000 > drain + bound, obj["metadata"]["name"]
    d = renders["default"].deployment_for("order-service")
    (c,) = d["spec"]["template"]["spec"]["containers"]
    assert readiness_notice_ms(c) == 4000, "readiness notices a draining pod within a few seconds"
    assert env_map(c)["SHUTDOWN_DRAIN_MS"]["value"] == "7000" and env_map(c)["SHUTDOWN_TIMEOUT_MS"]["value"] == "30000"
    assert d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 42


def test_drain_and_grace_period_values_are_checked():
    import helm_python as helm

    rendered = render({"shutdown": {"drainMs": 10000, "timeoutMs": 20000}, "terminationGracePeriodSeconds": 31})
    (c,) = rendered.deployment_for("user-service")["spec"]["template"]["spec"]["containers"]
    assert env_map(c)["SHUTDOWN_DRAIN_MS"]["value"] == "10000"
    with pytest.raises(helm.HelmError, match="terminationGracePeriodSeconds=30 must be longer"):
        render({"shutdown": {"drainMs": 10000, "timeoutMs": 20000}, "terminationGracePeriodSeconds": 30})
    with pytest.raises(helm.HelmError, match="shutdown.drainMs=4000 must be longer"):
        render({"shutdown": {"drainMs": 4000}})
    slower = render({"probes": {"readiness": {"periodSeconds": 5, "failureThreshold": 3}}})
    (c,) = slower.deployment_for("user-service")["spec"]["template"]["spec"]["containers"]
    assert env_map(c)["SHUTDOWN_DRAIN_MS"]["value"] == "18000", "the drain follows the probe"


# ---------------------------------------------------------------- secrets

ED25519_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")  # RFC 8410: version 0, id-Ed25519, 32-byte key


def pod_specs_using_secret(rendered, name: str) -> set[str]:
    users = set()
    for obj, spec in rendered.pod_specs():
        text = json.dumps(spec)
        if f'"secretName": "{name}"' in text or f'"name": "{name}", "key"' in text or f'"key": "{name}"' in text:
            users.add(obj["metadata"]["name"])
        for c in spec["containers"]:
            for e in c.get("env", []):
                if e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == name:
                    users.add(obj["metadata"]["name"])
    return users


@pytest.mark.parametrize("variant", ["default", "existing-secrets"])
def test_the_signing_key_is_mounted_into_user_service_only(renders, variant):
    rendered = renders[variant]
    name = "arch-keys" if variant == "existing-secrets" else f"{RELEASE}-signing-key"
    assert pod_specs_using_secret(rendered, name) == {f"{RELEASE}-user-service"}
    spec = rendered.deployment_for("user-service")["spec"]["template"]["spec"]
    (volume,) = [v for v in spec["volumes"] if v.get("secret", {}).get("secretName") == name]
    assert volume["secret"]["items"] == [{"key": "signing-key.pem", "path": "signing-key.pem"}]
    assert volume["secret"]["defaultMode"] == 0o440, "read-only, owner and group only"
    assert spec["securityContext"]["fsGroup"] == RESTRICTED_UID, "the group that may read it is the service's"
    (c,) = spec["containers"]
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    assert env_map(c)["AUTH_SIGNING_KEY_FILE"]["value"] == f"{mount['mountPath']}/signing-key.pem"
    assert env_map(c)["TOKEN_TTL_SECONDS"]["value"] == "3600"
    for component in SERVICES:
        if component != "user-service":
            (other,) = rendered.deployment_for(component)["spec"]["template"]["spec"]["containers"]
            assert "AUTH_SIGNING_KEY_FILE" not in env_map(other)


def test_the_signing_key_is_a_generated_ed25519_pkcs8_pem(default):
    secret = default.get("Secret", f"{RELEASE}-signing-key")
    assert set(secret["data"]) == {"signing-key.pem"}
    pem = base64.b64decode(secret["data"]["signing-key.pem"]).decode()
    m = re.fullmatch(r"-----BEGIN PRIVATE KEY-----\n([A-Za-z0-9+/=\n]+)-----END PRIVATE KEY-----\n", pem)
    assert m, pem
    der = base64.b64decode(m.group(1))
    assert len(der) == 48 and der.startswith(ED25519_PKCS8_PREFIX), der.hex()
    again = render().get("Secret", f"{RELEASE}-signing-key")
    assert again["data"] != secret["data"], "generated per install (offline nothing is looked up)"


def test_the_internal_api_token_is_generated_for_all_four(default):
    secret = default.get("Secret", f"{RELEASE}-internal-api-token")
    assert set(secret["data"]) == {"internal-api-token"}
    token = base64.b64decode(secret["data"]["internal-api-token"]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{48}", token), "at least 32 characters"
    assert pod_specs_using_secret(default, f"{RELEASE}-internal-api-token") == {f"{RELEASE}-{c}" for c in SERVICES}


def test_generated_secrets_are_kept_on_upgrade_and_replaceable():
    """Each generated value is read back from its Secret when it exists (lookup), and each
    Secret can be one the user made instead: helm template (GitOps) looks nothing up."""
    auth = (CHART_DIR / "templates" / "auth-secrets.yaml").read_text()
    assert auth.count('lookup "v1" "Secret" .Release.Namespace $name') == 2
    assert 'dig "data" "signing-key.pem"' in auth and 'dig "data" "internal-api-token"' in auth
    assert 'genPrivateKey "ed25519"' in auth and "randAlphaNum 48" in auth
    readme = (CHART_DIR / "README.md").read_text()
    for key in ("postgresql.existingSecret", "auth.signingKey.existingSecret", "auth.internalApiToken.existingSecret",
                "signing-key.pem", "internal-api-token", "postgres-password"):
        assert key in readme, f"helm/README.md does not say {key}"


def test_existing_secrets_render_no_secret(renders):
    rendered = renders["existing-secrets"]
    assert not rendered.of_kind("Secret"), "every secret comes from a Secret the user made"
    sts = rendered.get("StatefulSet", f"{RELEASE}-postgresql")
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in sts["spec"]["template"]["spec"]["containers"][0]["env"] if "valueFrom" in e}
    assert refs == {"arch-db"}
    assert pod_specs_using_secret(rendered, "arch-token") == {f"{RELEASE}-{c}" for c in SERVICES}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_no_secret_value_outside_a_secret(renders, variant):
    rendered = renders[variant]
    values = [base64.b64decode(v).decode() for s in rendered.of_kind("Secret") for v in s["data"].values()]
    secrets = {v for v in values if len(v) >= 16} | {
        line for v in values if v.startswith("-----BEGIN") for line in v.splitlines() if len(line) > 30
    }
    for obj in rendered.objects:
        if obj["kind"] == "Secret":
            continue
        text = json.dumps(obj)
        leaked = [v[:8] + "..." for v in secrets if v in text]
        assert not leaked, f"{obj['kind']}/{obj['metadata']['name']} holds secret values {leaked}"
    for cm in rendered.of_kind("ConfigMap"):
        assert "PRIVATE KEY" not in json.dumps(cm)
