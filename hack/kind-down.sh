#!/usr/bin/env bash
# Delete the kind cluster.
source "$(dirname "$0")/lib.sh"
need kind
say "deleting kind cluster $CLUSTER"
kind delete cluster --name "$CLUSTER"
