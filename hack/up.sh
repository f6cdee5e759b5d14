#!/usr/bin/env bash
# Set up a virtualenv with the project, then start the whole platform here:
# Redis (embedded), the dispatcher, workers and the gateway. Arguments go to
# `faas up`, e.g. `./hack/up.sh --mode pull --workers 2 --port 8000`.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "+ creating .venv"
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e . 2>&1 \
  | sed '/^WARNING: Location/d'
exec .venv/bin/faas up "$@"
