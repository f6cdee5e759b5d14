#!/usr/bin/env bash
# Fail if the chart's CRDs drifted from manifests/crds (fix: hack/sync-crds.sh).
source "$(dirname "$0")/lib.sh"
diff -r "$ROOT/manifests/crds" "$ROOT/charts/faas/crds" || die "CRDs drifted: run hack/sync-crds.sh"
say "CRDs in sync"
