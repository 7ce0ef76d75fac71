#!/usr/bin/env bash
# The main job on a fresh Debian machine: install everything, build the stack
# image, start `shipway server` on its embedded defaults (SQLite, local slug
# store, Docker runner, HAProxy router), then sign up a demo user and deploy
# examples/procfile with a real `git push`, and show that it answers.
#
# Re-runnable: a running server is reused, the demo user logs in again, and
# the app is redeployed. Settings come from SHIPWAY_* variables as usual.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

bash scripts/install.sh
SHIPWAY="$ROOT/.venv/bin/shipway"

export SHIPWAY_DATA_DIR=${SHIPWAY_DATA_DIR:-$HOME/.shipway}
HTTP_PORT=${SHIPWAY_HTTP_PORT:-5000}
ROUTER_PORT=${SHIPWAY_ROUTER_PORT:-8080}
BASE_DOMAIN=${SHIPWAY_BASE_DOMAIN:-localhost}
export SHIPWAY_URL=${SHIPWAY_URL:-http://127.0.0.1:$HTTP_PORT}
APP=${SHIPWAY_DEMO_APP:-hello}
mkdir -p "$SHIPWAY_DATA_DIR" && chmod 700 "$SHIPWAY_DATA_DIR"

echo "==> stack image"
"$SHIPWAY" stack:build

if curl -fsS "$SHIPWAY_URL/api/health" >/dev/null 2>&1; then
  echo "==> shipway server already running at $SHIPWAY_URL"
else
  echo "==> starting shipway server (log: $SHIPWAY_DATA_DIR/server.log)"
  nohup setsid "$SHIPWAY" server >>"$SHIPWAY_DATA_DIR/server.log" 2>&1 </dev/null &
  echo $! >"$SHIPWAY_DATA_DIR/server.pid"
  for _ in $(seq 1 120); do
    curl -fsS "$SHIPWAY_URL/api/health" >/dev/null 2>&1 && break
    sleep 0.5
  done
  curl -fsS "$SHIPWAY_URL/api/health" >/dev/null || { tail -50 "$SHIPWAY_DATA_DIR/server.log"; exit 1; }
fi

# The demo account's password is generated here, never stored in the repo.
DEMO_EMAIL=${SHIPWAY_DEMO_EMAIL:-demo@example.com}
PASSWORD_FILE="$SHIPWAY_DATA_DIR/demo-password"
if [ ! -f "$PASSWORD_FILE" ]; then
  (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$PASSWORD_FILE")
fi
export SHIPWAY_PASSWORD=$(cat "$PASSWORD_FILE")
echo "==> demo account $DEMO_EMAIL (password in $PASSWORD_FILE)"
"$SHIPWAY" signup --email "$DEMO_EMAIL" --password "$SHIPWAY_PASSWORD" >/dev/null 2>&1 || true
"$SHIPWAY" login --email "$DEMO_EMAIL" --password "$SHIPWAY_PASSWORD"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp -r examples/procfile/. "$WORK/"
cd "$WORK"
git init -q -b main
git -c user.email="$DEMO_EMAIL" -c user.name=demo add -A
git -c user.email="$DEMO_EMAIL" -c user.name=demo commit -qm "Deploy the demo app"
if ! "$SHIPWAY" apps:info -a "$APP" >/dev/null 2>&1; then
  "$SHIPWAY" create "$APP"
fi
git remote remove shipway 2>/dev/null || true
git remote add shipway "$SHIPWAY_URL/$APP.git"
echo "==> git push shipway main"
git push --force shipway main

URL="http://$APP.$BASE_DOMAIN:$ROUTER_PORT/"
echo "==> $URL"
curl -fsS --resolve "$APP.$BASE_DOMAIN:$ROUTER_PORT:127.0.0.1" "$URL"
echo
echo "Shipway is running: API $SHIPWAY_URL, app $URL"
