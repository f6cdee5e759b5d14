#!/usr/bin/env bash
# kubectl delete pod at random on workers, the dispatcher, the gateway and Redis
# while tasks flow; then check that every task ended correctly. Prints a report.
source "$(dirname "$0")/lib.sh"
need kubectl
say "chaos against $GATEWAY_URL (namespace $NAMESPACE)"
FAAS_E2E_URL="$GATEWAY_URL" FAAS_E2E_NAMESPACE="$NAMESPACE" FAAS_E2E_RELEASE="$RELEASE" \
  "$(python_bin)" -m pytest "$ROOT/tests/e2e/test_k8s_chaos.py" -v -s "$@"
