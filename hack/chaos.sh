#!/usr/bin/env bash
# kubectl delete pod on every component in turn (workers, the dispatcher, the
# gateway, Redis) from the first submit until every task has ended; then check
# that every task ended correctly. Prints a report: deletions and recovery time
# per component, repeated executions. FAAS_CHAOS_ROUNDS (default 2) deletions per
# component at least.
source "$(dirname "$0")/lib.sh"
need kubectl
say "chaos against $GATEWAY_URL (namespace $NAMESPACE)"
FAAS_E2E_URL="$GATEWAY_URL" FAAS_E2E_NAMESPACE="$NAMESPACE" FAAS_E2E_RELEASE="$RELEASE" \
  "$(python_bin)" -m pytest "$ROOT/tests/e2e/test_k8s_chaos.py" -v -s "$@"
