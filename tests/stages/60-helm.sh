#!/usr/bin/env bash
# Stage 60: the Helm chart (helm/), the Dockerfile and the local ingress stand-in, offline.
#
# The chart is rendered with Helm's own engine (the Helm v4 SDK embedded in the
# helm-python-sdk package: no helm binary, no cluster, no network), linted like
# `helm lint --strict`, every object is validated against the Kubernetes 1.30 schemas
# shipped in kubernetes-validate (strict), and tests/helm/ asserts the chart's promises.
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

ensure_python_tools

log "helm lint --strict (Kubernetes 1.30, namespace arch)"
python - <<'PY'
import json, sys
sys.path.insert(0, "tests/helm")
import chartlib
for name, values in {"default": None, "external database": {"postgresql": {"enabled": False}, "externalDatabase": {"existingSecret": "arch-databases"}}}.items():
    report = chartlib.lint(values)
    for m in report["messages"]:
        print(f"  [{('UNKNOWN', 'INFO', 'WARNING', 'ERROR')[m['severity']]}] {m['path']}: {m['error']}")
    bad = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    print(f"lint ({name}): {report['total_charts_linted']} chart(s), {len(bad)} problem(s)")
    if bad:
        sys.exit(1)
PY

log "render (release arch, namespace arch) and validate against the Kubernetes 1.30 schemas"
python tests/helm/chartlib.py > "$ARTIFACTS/helm-rendered.yaml"
kubernetes-validate --strict --kubernetes-version 1.30.0 --quiet "$ARTIFACTS/helm-rendered.yaml"
python tests/helm/chartlib.py --set-json '{"postgresql": {"enabled": false}, "externalDatabase": {"existingSecret": "arch-databases"}}' \
  > "$ARTIFACTS/helm-rendered-external-db.yaml"
kubernetes-validate --strict --kubernetes-version 1.30.0 --quiet "$ARTIFACTS/helm-rendered-external-db.yaml"
python - "$ARTIFACTS/helm-rendered.yaml" <<'PY'
import collections, sys, yaml
kinds = collections.Counter(d["kind"] for d in yaml.safe_load_all(open(sys.argv[1])) if d)
print("rendered: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
PY

log "chart, Dockerfile and ingress proxy checks (pytest tests/helm)"
python -m pytest -p no:cacheprovider -q tests/helm
