#!/usr/bin/env bash
# Set up a virtualenv with the project, then start the whole platform here:
# Redis (embedded), the dispatcher, workers and the gateway. Arguments go to
# `faas up`, e.g. `./hack/up.sh --mode pull --workers 2 --port 8000`.
source "$(dirname "$0")/lib.sh"
ensure_venv ""
exec "$ROOT/.venv/bin/faas" up "$@"
