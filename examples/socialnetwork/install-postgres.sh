#!/usr/bin/env bash
# Install what the social network's optional PostgreSQL+memcached backend runs on:
# Debian's `postgresql` and `memcached` packages, and the Python drivers.
#
# The example starts throwaway servers of its own (appstore.app_postgres and
# app_memcached: a temporary data folder, a unix socket or a free port), so the
# system services that Debian starts on install are not needed: those that this
# script's install started are stopped again. Servers that ran before are left alone.
# Its tests skip, saying why, where any of this is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)

missing=()
for package in postgresql memcached; do
  # "ok installed", not merely known to dpkg (a removed package keeps its config files)
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' \
    || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "+ apt-get install ${missing[*]}" >&2
  "${sudo[@]}" apt-get update -qq
  # No recommends: the server and its client tools are all the example needs.
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  for package in "${missing[@]}"; do
    "${sudo[@]}" service "$package" stop >/dev/null 2>&1 || true
  done
fi

python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python
echo "+ pip install the examples extra (psycopg, pymemcache)" >&2
"$python" -m pip install --quiet --disable-pip-version-check -e '.[examples]'
