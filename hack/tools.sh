#!/usr/bin/env bash
# Install pinned kind, helm and kubectl into .tools/bin from their official
# releases (needs internet), checking each download's published SHA-256.
source "$(dirname "$0")/lib.sh"
KIND_VERSION=v0.27.0
HELM_VERSION=v3.17.3
KUBECTL_VERSION=v1.32.3
os=$(uname | tr '[:upper:]' '[:lower:]')
arch=$(uname -m); case "$arch" in x86_64) arch=amd64 ;; aarch64|arm64) arch=arm64 ;; esac
mkdir -p "$TOOLS"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

fetch() { curl -fsSL --retry 3 -o "$2" "$1"; }
check() { echo "$(cut -d' ' -f1 < "$2")  $1" | sha256sum -c --quiet - || die "checksum mismatch for $1"; }

say "kind $KIND_VERSION"
fetch "https://kind.sigs.k8s.io/dl/$KIND_VERSION/kind-$os-$arch" "$tmp/kind"
fetch "https://kind.sigs.k8s.io/dl/$KIND_VERSION/kind-$os-$arch.sha256sum" "$tmp/kind.sha"
(cd "$tmp" && check kind kind.sha) && install -m 0755 "$tmp/kind" "$TOOLS/kind"

say "kubectl $KUBECTL_VERSION"
fetch "https://dl.k8s.io/release/$KUBECTL_VERSION/bin/$os/$arch/kubectl" "$tmp/kubectl"
fetch "https://dl.k8s.io/release/$KUBECTL_VERSION/bin/$os/$arch/kubectl.sha256" "$tmp/kubectl.sha"
(cd "$tmp" && check kubectl kubectl.sha) && install -m 0755 "$tmp/kubectl" "$TOOLS/kubectl"

say "helm $HELM_VERSION"
fetch "https://get.helm.sh/helm-$HELM_VERSION-$os-$arch.tar.gz" "$tmp/helm.tgz"
fetch "https://get.helm.sh/helm-$HELM_VERSION-$os-$arch.tar.gz.sha256sum" "$tmp/helm.sha"
(cd "$tmp" && check helm.tgz helm.sha) && tar -xzf "$tmp/helm.tgz" -C "$tmp" && install -m 0755 "$tmp/$os-$arch/helm" "$TOOLS/helm"

kind version && kubectl version --client && helm version
