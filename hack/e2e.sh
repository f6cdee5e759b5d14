#!/usr/bin/env bash
# Run tests/e2e against the deployed platform through the ingress.
source "$(dirname "$0")/lib.sh"
need kubectl
say "e2e tests against $GATEWAY_URL"
FAAS_E2E_URL="$GATEWAY_URL" FAAS_E2E_NAMESPACE="$NAMESPACE" FAAS_E2E_RELEASE="$RELEASE" \
  "$(python_bin)" -m pytest "$ROOT/tests/e2e" -v -s "$@"
