# Sourced by the other scripts: strict mode, logging, the local tools folder.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS="$ROOT/.tools/bin"
export PATH="$TOOLS:$PATH"
CLUSTER=${FAAS_KIND_CLUSTER:-faas}
NAMESPACE=${FAAS_NAMESPACE:-faas}
RELEASE=${FAAS_RELEASE:-faas}
IMAGE=${FAAS_IMAGE:-faas:dev}
GATEWAY_URL=${FAAS_E2E_URL:-http://127.0.0.1:8080}

say() { printf '\033[1m+ %s\033[0m\n' "$*" >&2; }
die() { printf '\033[31merror: %s\033[0m\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || die "$1 is not installed (try hack/tools.sh)"; }
python_bin() { if [ -x "$ROOT/.venv/bin/python" ]; then echo "$ROOT/.venv/bin/python"; else echo python3; fi; }

# Create .venv if needed and install the project with the given extras (e.g. "[dev]").
# The install is editable, so only pyproject.toml (dependencies, entry points) or
# other extras call for another: a stamp in .venv records what was installed.
ensure_venv() {
  if [ ! -x "$ROOT/.venv/bin/python" ]; then
    say "creating .venv"
    "${PYTHON:-python3}" -m venv "$ROOT/.venv"
  fi
  local stamp="$ROOT/.venv/.faas-installed" hash
  hash=$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)
  if grep -qxF "$hash $1" "$stamp" 2>/dev/null; then
    return
  fi
  say "installing the project$1"
  "$ROOT/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT$1" 2>&1 \
    | sed '/^WARNING: Location/d'
  # Lines for an older pyproject.toml go; extras install the base project too.
  { grep -F "$hash " "$stamp" 2>/dev/null || true; printf '%s\n' "$hash $1" "$hash "; } \
    | sort -u >"$stamp.new"
  mv "$stamp.new" "$stamp"
}
