#!/bin/bash
# The run container's entrypoint (PID 1 is tini, which forwards signals to
# this process group). Shipway copies this file and /shipway/env into the
# container (/shipway-in) before it starts; nothing of the host is mounted.
#
#   1. load the environment (config vars, PORT, APP_*, the signed URLs),
#   2. download the slug through its signed URL and unpack it into /app
#      (and for an Erlang release, start epmd for its node),
#   3. start an SSH server for the users allowed on the app, whose keys are
#      asked of Shipway through a signed URL at each login,
#   4. exec the Procfile command of this replica's process type, like Heroku:
#      `bash -c` in /app after sourcing /app/.profile.d/*.sh.
set -euo pipefail

log() { echo "shipway: $*" >&2; }

# The root filesystem is read-only; /workspace (where /app points), /tmp
# and /shipway are tmpfs of fixed size (SHIPWAY_RUN_DISK in all), and
# /shipway-in holds this file and the env, root-owned. The env is copied to
# /shipway/env, where the hot-upgrade script and SSH sessions read it.
install -m 0600 /shipway-in/env /shipway/env
set -a
# shellcheck disable=SC1091
. /shipway/env
set +a
# An Erlang release's node: a distinct long name per replica,
# APP@<its address on the app's network>, which the app's discovery name
# (SHIPWAY_CLUSTER_DNS) resolves to, so that replicas cluster (libcluster's
# DNSPoll with node_basename APP). Written into /shipway/env for SSH
# sessions and the hot-upgrade script, which talk to this node.
if [[ ${RELEASE_DISTRIBUTION:-} == name && -n ${RELEASE_NODE:-} ]]; then
  address=$(getent hosts "$HOSTNAME" | awk '{print $1; exit}' || true)
  if [ -n "$address" ]; then
    RELEASE_NODE="${RELEASE_NODE%%@*}@$address"
    MY_NODE_NAME=$RELEASE_NODE
    printf 'RELEASE_NODE=%s\nMY_NODE_NAME=%s\n' "$RELEASE_NODE" "$MY_NODE_NAME" >>/shipway/env
  fi
  # issue 17: the node's distribution listens on this fixed port (below),
  # which `ps:observer` tunnels to through SSH, and which is published on
  # the host's 127.0.0.1 only (runner/container_spec.py DIST_PORT), where
  # Shipway calls the node for a hot upgrade (runner/erl_dist.py).
  SHIPWAY_DIST_PORT=9100
  printf 'SHIPWAY_DIST_PORT=%s\n' "$SHIPWAY_DIST_PORT" >>/shipway/env
fi
chmod 0400 /shipway/env

# The slug is streamed from its signed URL into tar, never stored whole:
# only its unpacked files take room, bounded by /workspace's size. A slug
# that unpacks to more fails the replica (and so the deploy) with a clear
# error. A container restarted in place gets an empty tmpfs and unpacks
# again.
gunzip=(-z); command -v pigz >/dev/null && gunzip=(-I pigz)
room() { df -Pk /workspace | awk 'NR==2 {print $2 * 1024}'; }
if [ ! -e /workspace/.slug.done ]; then
  log "downloading slug for ${APP_NAME} ${APP_VERSION}"
  for attempt in 1 2 3 4 5; do
    rm -rf /workspace/app && mkdir -p /workspace/app
    status=0
    curl -fsS --max-time 300 "$SHIPWAY_SLUG_URL" \
      | tar "${gunzip[@]}" -xf - -C /workspace/app 2>/tmp/.untar.err || status=$?
    [ "$status" = 0 ] && break
    if grep -q "No space left" /tmp/.untar.err 2>/dev/null; then
      rm -rf /workspace/app
      log "slug unpacks to more than $(( $(room) / 1024 / 1024 )) MB (SHIPWAY_RUN_DISK)"
      exit 1
    fi
    [ "$attempt" = 5 ] && { log "slug download failed"; exit 1; }
    sleep 1
  done
  rm -f /tmp/.untar.err
  touch /workspace/.slug.done
  log "slug unpacked"
fi

# An Erlang release runs as a distributed node (Shipway sets
# RELEASE_DISTRIBUTION and RELEASE_NODE for every app): as it boots it
# registers with epmd, and when none runs it starts one and retries, which
# took 0.4 s of the Elixir example's 1.9 s boot here. So the release's own
# epmd (the stack's without one) is started now, before the app's exec.
if [[ ${RELEASE_DISTRIBUTION:-} == name || ${RELEASE_DISTRIBUTION:-} == sname ]]; then
  release_epmd=$(compgen -G "/app/_build/*/rel/*/erts-*/bin/epmd" | head -n 1 || true)
  if [ -z "$release_epmd" ] && compgen -G "/app/_build/*/rel/*/releases/start_erl.data" >/dev/null; then
    release_epmd=$(command -v epmd || true)
  fi
  if [ -n "$release_epmd" ]; then
    if "$release_epmd" -daemon; then log "epmd started for the release's node"
    else log "epmd did not start (the release starts its own)"; fi
  fi
  # The fixed distribution port, in the releases' vm.args (what `bin/APP
  # start` reads; not the environment, which `bin/APP rpc` and `remote`
  # would inherit and then fail to listen on a port taken). Still
  # registered with epmd: the app's replicas find each other as before.
  if [ -n "${SHIPWAY_DIST_PORT:-}" ]; then
    for vm_args in /app/_build/*/rel/*/releases/*/vm.args; do
      [ -f "$vm_args" ] && ! grep -q '^## shipway: distribution port' "$vm_args" || continue
      printf '\n## shipway: distribution port (ps:observer)\n-kernel inet_dist_listen_min %s inet_dist_listen_max %s\n' \
        "$SHIPWAY_DIST_PORT" "$SHIPWAY_DIST_PORT" >>"$vm_args"
    done
  fi
fi

# --- SSH (ps:ssh): a non-root sshd on port 2222 that lets in the app's users.
# issue 18 item 6: sshd asks Shipway for the app's keys at each login
# (AuthorizedKeysCommand), so a key added or removed counts at once. The
# keys URL's signature expires (issue 14): each answer names a fresh one
# (Shipway-Keys-Url), kept in /shipway/ssh/keys_url for the next ask; a
# loop asks every 60 s only to keep that URL fresh between logins. The
# command runs as this container's own unprivileged user (sshd is not
# root), gives up after a few seconds, and fails closed: no answer, no key.
write_keys_command() {
  cat >/shipway/ssh/keys.sh <<'KEYS'
# AuthorizedKeysCommand: print the app's authorized_keys, or nothing.
set -u
dir=/shipway/ssh
url=$(cat "$dir/keys_url" 2>/dev/null) || exit 1
[ -n "$url" ] || exit 1
tmp=$(mktemp "$dir/.keys.XXXXXX") || exit 1
trap 'rm -f "$tmp" "$tmp.h" "$tmp.u"' EXIT
curl -fsS --connect-timeout 2 --max-time 5 -D "$tmp.h" -o "$tmp" "$url" || exit 1
next=$(tr -d '\r' <"$tmp.h" \
  | sed -n 's|^[Ss]hipway-[Kk]eys-[Uu]rl: *\(/keys/[A-Za-z0-9?&=_.-]*\)$|\1|p' | tail -n 1)
if [ -n "$next" ]; then
  echo "${url%%/keys/*}$next" >"$tmp.u" && mv -f "$tmp.u" "$dir/keys_url"
fi
cp -f "$tmp" "$dir/authorized_keys"  # what the last ask saw (sshd does not read it)
cat "$tmp"
KEYS
  chmod 0500 /shipway/ssh/keys.sh
}

fetch_keys() { /bin/bash /shipway/ssh/keys.sh >/dev/null; }

start_sshd() {
  mkdir -p /shipway/ssh
  chmod 700 /shipway/ssh
  # The app's own host key (the same in every replica, pinned by ps:ssh);
  # without one, a key of this container's.
  if [ -s /shipway-in/ssh_host_key ]; then
    install -m 0600 /shipway-in/ssh_host_key /shipway/ssh/host_ed25519_key
  else
    ssh-keygen -q -t ed25519 -N '' -f /shipway/ssh/host_ed25519_key </dev/null >/dev/null
  fi
  : >/shipway/ssh/authorized_keys
  echo "$SHIPWAY_KEYS_URL" >/shipway/ssh/keys_url
  write_keys_command
  fetch_keys || log "could not fetch SSH keys yet"
  cat >/shipway/ssh/sshd_config <<EOF
Port 2222
HostKey /shipway/ssh/host_ed25519_key
PidFile /shipway/ssh/sshd.pid
AuthorizedKeysFile none
AuthorizedKeysCommand /bin/bash /shipway/ssh/keys.sh
AuthorizedKeysCommandUser $(id -un)
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
PermitUserEnvironment no
AllowTcpForwarding yes
X11Forwarding no
PrintMotd no
ForceCommand /bin/bash /shipway/ssh-session.sh
EOF
  cat >/shipway/ssh-session.sh <<'EOF'
# Every SSH session gets the replica's environment, in /app.
set -a; . /shipway/env; set +a
unset SHIPWAY_SLUG_URL SHIPWAY_KEYS_URL SHIPWAY_COMMAND
cd /app
for f in /app/.profile.d/*.sh; do [ -r "$f" ] && . "$f"; done
if [ -n "${SSH_ORIGINAL_COMMAND:-}" ]; then exec /bin/bash -c "$SSH_ORIGINAL_COMMAND"; fi
exec /bin/bash -l
EOF
  /usr/sbin/sshd -f /shipway/ssh/sshd_config -E /shipway/ssh/sshd.log \
    || { log "sshd did not start (ps:ssh unavailable)"; return 0; }
  ( while sleep 60; do fetch_keys || true; done ) </dev/null >/dev/null 2>&1 &
}

# In the background: the app should not wait for host keys to be made.
if [ -n "${SHIPWAY_KEYS_URL:-}" ] && [ -x /usr/sbin/sshd ]; then
  ( start_sshd || log "ssh setup failed (ps:ssh unavailable)" ) </dev/null &
fi

# --- the process -----------------------------------------------------------
cd /app
export HOME=/app
# Buildpacks' profile scripts are not written for `set -eu`.
set +eu
if [ -d /app/.profile.d ]; then
  for f in /app/.profile.d/*.sh; do
    # shellcheck disable=SC1090
    [ -r "$f" ] && . "$f"
  done
fi
set -eu
command=${SHIPWAY_COMMAND:?no command for process type ${SHIPWAY_PROCESS_TYPE:-?}}
unset SHIPWAY_SLUG_URL SHIPWAY_KEYS_URL SHIPWAY_COMMAND
log "starting ${SHIPWAY_PROCESS_TYPE}: ${command}"
exec /bin/bash -c "$command"
