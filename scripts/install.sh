#!/usr/bin/env bash
# Installs everything Shipway and its tests need on a Debian machine:
# system packages (apt), a virtualenv in .venv, and Shipway itself.
# Idempotent: a second run installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(git openssh-client openssh-server debootstrap nginx-light postgresql
              sqlite3 curl ca-certificates python3-venv
              haproxy  # issue 16: the router changed at run time (router/haproxy.py)
              pebble  # issue 16: a real ACME server (pebble, pebble-challtestsrv) for the tests
              libnginx-mod-http-lua lua-resty-core  # bench/router_lua.py: the nginx + Lua candidate
              wrk)  # bench/router_*.py: the HTTP load generator
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # --- no system haproxy (issue 14) ---
  # Debian's haproxy starts a system service on port 80 when installed on a
  # host with an init system; Shipway runs its own haproxy processes. While
  # apt installs, policy-rc.d forbids starting services (exit 101), unless
  # the host already has a policy of its own.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# shipway install.sh: no service starts while it installs\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if grep -q "^# shipway install.sh" "$policy" 2>/dev/null; then
    rm -f "$policy"
    trap - EXIT
  fi
fi
# A system haproxy service (installed now or before) is stopped and disabled
# through the init system, which touches only the service's own process
# (its unit, or /run/haproxy.pid), never the haproxy processes Shipway starts.
if dpkg -s haproxy >/dev/null 2>&1; then
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    systemctl disable --now haproxy.service >/dev/null 2>&1 || true
  elif [ -x /etc/init.d/haproxy ]; then
    /etc/init.d/haproxy stop >/dev/null 2>&1 || true
    update-rc.d haproxy disable >/dev/null 2>&1 || true
  fi
fi
# --- end no system haproxy ---

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
