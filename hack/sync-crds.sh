#!/usr/bin/env bash
# Copy the CRDs (source of truth: manifests/crds) into the chart.
source "$(dirname "$0")/lib.sh"
cp "$ROOT"/manifests/crds/*.yaml "$ROOT/charts/faas/crds/"
say "CRDs synced into charts/faas/crds"
