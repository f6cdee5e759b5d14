#!/usr/bin/env bash
# Install (or upgrade) the chart in MODE (local, pull or push; default pull),
# reachable through the ingress at $GATEWAY_URL. Extra arguments go to helm.
source "$(dirname "$0")/lib.sh"
need helm
MODE=${1:-pull}; shift || true
say "helm upgrade --install $RELEASE (mode=$MODE)"
helm upgrade --install "$RELEASE" "$ROOT/charts/faas" \
  --namespace "$NAMESPACE" --create-namespace \
  --set mode="$MODE" \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
  --set gateway.ingress.enabled=true \
  --set-string 'gateway.ingress.annotations.nginx\.ingress\.kubernetes\.io/proxy-body-size=64m' \
  --wait --timeout 5m "$@"
say "helm test $RELEASE"
helm test "$RELEASE" --namespace "$NAMESPACE" --logs
say "gateway: $GATEWAY_URL"
