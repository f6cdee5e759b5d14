#!/usr/bin/env bash
# Create a kind cluster (manifests/kind-config.yaml maps host port 8080 to the
# ingress) and install the ingress-nginx controller for kind.
source "$(dirname "$0")/lib.sh"
need kind; need kubectl; need docker
INGRESS_NGINX=controller-v1.12.1
if kind get clusters | grep -qx "$CLUSTER"; then
  say "kind cluster $CLUSTER exists"
else
  say "creating kind cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --config "$ROOT/manifests/kind-config.yaml" --wait 120s
fi
say "installing ingress-nginx $INGRESS_NGINX"
kubectl apply -f "https://raw.githubusercontent.com/kubernetes/ingress-nginx/$INGRESS_NGINX/deploy/static/provider/kind/deploy.yaml"
kubectl wait --namespace ingress-nginx --for=condition=ready pod \
  --selector=app.kubernetes.io/component=controller --timeout=180s
kubectl apply -f "$ROOT/manifests/namespace.yaml"
