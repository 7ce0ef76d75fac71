#!/usr/bin/env bash
# Installs everything Shipway and its tests need on a Debian machine:
# system packages (apt), a virtualenv in .venv, and Shipway itself.
# Idempotent: a second run installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(git openssh-client openssh-server debootstrap nginx-light postgresql
              sqlite3 curl ca-certificates python3-venv
              haproxy  # issue 16: the router changed at run time (router/haproxy.py)
              pebble)  # issue 16: a real ACME server (pebble, pebble-challtestsrv) for the tests
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  echo "Shipway needs a running Docker engine (docker info failed)." >&2
  exit 1
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.shipway-installed
if [ ! -f "$stamp" ] || [ setup.py -nt "$stamp" ]; then
  echo "==> pip install -e .[test]"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  touch "$stamp"
fi
