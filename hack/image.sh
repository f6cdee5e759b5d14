#!/usr/bin/env bash
# Build the image and load it into the kind cluster. BASE_IMAGE overrides the base.
source "$(dirname "$0")/lib.sh"
need docker; need kind
say "building $IMAGE"
docker build -t "$IMAGE" ${BASE_IMAGE:+--build-arg BASE_IMAGE="$BASE_IMAGE"} "$ROOT"
say "loading $IMAGE into kind cluster $CLUSTER"
kind load docker-image "$IMAGE" --name "$CLUSTER"
