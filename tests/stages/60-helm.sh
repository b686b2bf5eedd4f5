#!/usr/bin/env bash
# Stage 60: the Helm chart (helm/) and the Dockerfile, offline.
#
# The chart is rendered with Helm's own engine (the Helm v4 SDK embedded in the
# helm-python-sdk package: no helm binary, no cluster, no network) in every values variant
# of tests/helm/test_chart.py, each linted like `helm lint --strict`, every object validated
# against the Kubernetes 1.30 schemas shipped in kubernetes-validate (strict) and the
# HTTPRoute against the Gateway API's schema (npm @kubernetes-models/gateway-api), and
# tests/helm/ asserts the chart's promises.
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

ensure_python_tools
ensure_node_modules

log "render (release arch, namespace arch): tests/artifacts/helm-rendered.yaml"
python tests/helm/chartlib.py > "$ARTIFACTS/helm-rendered.yaml"
python - "$ARTIFACTS/helm-rendered.yaml" <<'PY'
import collections, sys, yaml
kinds = collections.Counter(d["kind"] for d in yaml.safe_load_all(open(sys.argv[1])) if d)
print("rendered: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
PY

log "lint, schemas and the chart's promises in every values variant (pytest tests/helm)"
python -m pytest -p no:cacheprovider -q tests/helm
