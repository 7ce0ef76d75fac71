#!/bin/bash
# Hot upgrade of the Elixir release running in the replicas, none
# restarted. Run by Shipway with `docker exec` as the app user, as `bash
# -c`'s script: $1 the Shipway release number, $2 the mode.
#
# otp REL VSN STAGGER DEADLINE SCRIPT NAME...: an OTP release upgrade of every
# replica NAME (container names on the app's network) to release VSN of
# REL (_build/<env>/rel/<name>), the way taken when Shipway cannot reach
# this node's distribution port itself (runner/hot_upgrade.py): the
# slug's upgrade artefact (the new releases/VSN/ and applications) is on
# stdin, and erl_call (a C client: no BEAM booted) has this replica's node
# run SCRIPT (runner/files/hot-upgrade.exprs, which stages the release on
# every node over the distribution, then switches them all; STAGGER true
# stages one node after the other; DEADLINE, epoch ms, is when it must be
# done, erl_call waiting 30 s past it). Prints NAME|CODE|TEXT per replica
# (CODE as the exit statuses below: runner/hot_upgrade.py reads each
# replica's own) and timing lines; exits 0 once the node answered.
#
# reload URL: no version bump: the slug at URL (signed) is unpacked beside
# /app, the beams that differ are copied into the running release and
# loaded in the node (purge the old code, load the new). Processes keep
# their state and connections and pick the new code up at their next
# fully-qualified call, as with `c:l/1` in a shell; code_change/3 is not
# called.
#
# Exit 3: not hot-upgradable, nothing changed (not a release; the release
# name, ERTS or an application changed); the runner then deploys with a
# restart. Exit 4: install_release failed, the node is on (or went back
# to) the old release.
set -euo pipefail
version=$1 mode=$2
shift 2
set -a
# shellcheck disable=SC1091
. /shipway/env
set +a

refuse() { echo "$*"; exit 3; }
started=$EPOCHREALTIME
erl_call=/usr/bin/erl_call; [ -x $erl_call ] || erl_call=/usr/lib/erlang/bin/erl_call
timeout=120
node() {  # erl_call to the node running here, Erlang expressions on stdin
  "$erl_call" -name "$RELEASE_NODE" -c "$RELEASE_COOKIE" -timeout "$timeout" -e
}
[[ $version =~ ^[0-9]+$ ]] || refuse "not a release number: $version"

if [ "$mode" = otp ]; then
  rel=$1 vsn=$2 stagger=$3 deadline=$4 script=$5
  shift 5
  # They go into paths and Erlang expressions: plain only.
  [[ $rel =~ ^_build/[A-Za-z0-9_.-]+/rel/[A-Za-z0-9_.-]+$ && $rel != *..* \
     && $vsn =~ ^[A-Za-z0-9._+-]+$ && $vsn != *..* && ($stagger == true || $stagger == false) ]] \
    || refuse "not hot-upgradable: the release's name or version is not plain"
  [[ $deadline =~ ^[0-9]{1,15}$ ]] || refuse "not a deadline: $deadline"
  now=${EPOCHREALTIME/./}
  timeout=$(( (deadline - ${now:0:-3}) / 1000 + 30 ))
  (( timeout > 30 )) || timeout=30
  targets=
  for t in "$@"; do
    [[ $t =~ ^[A-Za-z0-9_.-]+$ ]] || refuse "not a replica name: $t"
    targets+="\"$t\","
  done
  [ -d "/app/$rel" ] || refuse "the release name changed"
  tarfile=/app/.shipway-upgrade.$$.tar exprs=/app/.shipway-upgrade.$$.exprs
  trap 'rm -f "$tarfile" "$exprs"' EXIT
  printf '%s' "$script" > "$exprs"
  trap 'exit 143' TERM  # a timeout's SIGTERM runs the EXIT trap too
  cat > "$tarfile"
  received=$EPOCHREALTIME
  status=0
  # runner/files/hot-upgrade.exprs, given as SCRIPT, with its bindings (an
  # orddict: sorted by name). A node whose install
  # fails after the point of no return reboots on the old release: its
  # call then gets no answer (code 4).
  said=$(node 2>&1 <<EOS
file:script("$exprs", [{'Deadline', $deadline}, {'Rel', "$rel"}, {'Stagger', $stagger},
                       {'TarFile', "$tarfile"}, {'Targets', [${targets%,}]}, {'Version', "$version"},
                       {'Vsn', "$vsn"}]).
EOS
  ) || status=$?
  if [ "$status" != 0 ] || ! [[ $said =~ ^\{ok,\ ?\{ok,\ ?\"(.*timing\|[0-9|]+)\"\}\}$ ]]; then
    echo "the upgrade did not complete (erl_call exit $status): ${said:0:400}"
    exit 1
  fi
  IFS=';' read -ra lines <<<"${BASH_REMATCH[1]}"
  printf '%s\n' "${lines[@]}"
  echo "conductor|${started/./}|${received/./}|${EPOCHREALTIME/./}"
  exit 0
fi

# reload: the whole slug, unpacked under /tmp.
url=$1
release_bin() {  # bin: the release's start script under $1, if any (no subshell)
  local b
  bin=
  for b in "$1"/_build/*/rel/*/bin/*; do
    case "$b" in *.bat) ;; *) [ -f "$b" ] && [ -x "$b" ] && { bin=$b; return 0; } ;; esac
  done
  return 0
}
vsn_of() {  # vsn: the release version in start_erl.data ("<erts> <vsn>")
  local erts
  read -r erts vsn < "$1" || [ -n "$vsn" ]  # no newline at its end
}
gunzip=(-z); [ -x /usr/bin/pigz ] && gunzip=(-I pigz)
next=/tmp/shipway-next.$$
trap '[ ! -e "$next" ] || rm -rf "$next"' EXIT
trap 'exit 143' TERM  # a timeout's SIGTERM runs the EXIT trap too
release_bin /app
old_bin=$bin
[ -n "$old_bin" ] || refuse "no Elixir release (mix release) to upgrade"
mkdir -p "$next"
curl -fsS --max-time 300 "$url" | tar "${gunzip[@]}" -xf - -C "$next"
release_bin "$next"
new_bin=$bin
[ -n "$new_bin" ] || refuse "no Elixir release (mix release) to upgrade"
[ "${old_bin#/app/}" = "${new_bin#"$next"/}" ] || refuse "the release name changed"
old_rel=${old_bin%/bin/*}
new_rel=${new_bin%/bin/*}
vsn_of "$old_rel/releases/start_erl.data"; running_vsn=$vsn
vsn_of "$new_rel/releases/start_erl.data"; new_vsn=$vsn
if [ "$running_vsn" != "$new_vsn" ]; then
  # The runner sends a version bump the OTP way when the slug has an
  # upgrade artefact with a relup; here, none came with it.
  if [ -f "$new_rel/releases/shipway-no-hot-upgrade" ]; then
    read -r reason < "$new_rel/releases/shipway-no-hot-upgrade" || true
    refuse "$reason ($running_vsn to $new_vsn)"
  fi
  refuse "the release version changed ($running_vsn to $new_vsn) but the build made no relup from $running_vsn"
fi
echo "no version bump ($running_vsn): module reload (code_change/3 is not called)"


# Only module code may change: the same ERTS, the same applications at the
# same versions, the same release version.
layout() { (cd "$1" && ls -d erts-* lib/* releases/*/ 2>/dev/null | sort); }
[ "$(layout "$old_rel")" = "$(layout "$new_rel")" ] \
  || refuse "applications, their versions or ERTS changed: a restart is needed"

changed=()
while IFS= read -r beam; do
  cmp -s "$new_rel/$beam" "$old_rel/$beam" || changed+=("$(basename "$beam" .beam)")
done < <(cd "$new_rel" && find lib releases -name '*.beam' | sort)

# The new slug's files that differ put in place (sources, priv and static
# files, the beams; a file in use, like ERTS's, is replaced, never written
# into), then the changed modules loaded into the running node. Each file is
# copied beside its place and renamed over it: a release in interactive mode
# loads a module from disk at its first use, which must never find the file
# missing or half written.
while IFS= read -r -d '' file; do
  if ! cmp -s "$next/$file" "/app/$file"; then
    mkdir -p "/app/$(dirname "$file")"
    cp -a "$next/$file" "/app/$file.shipway-new"
    mv -f "/app/$file.shipway-new" "/app/$file"
  fi
done < <(cd "$next" && find . -type f -print0)
if [ ${#changed[@]} -gt 0 ]; then
  mods=
  for m in "${changed[@]}"; do  # quoted atoms: \ and ' escaped
    m=${m//\\/\\\\} m=${m//\'/\\\'}
    mods+="'$m',"
  done
  said=$(node 2>&1 <<EOS
Mods = [${mods%,}],
[begin code:purge(M), {module, M} = code:load_file(M) end || M <- Mods],
lists:flatten(lists:join(", ", [case atom_to_list(M) of "Elixir." ++ N -> N; N -> N end || M <- Mods])).
EOS
  ) || { echo "loading the changed modules failed: ${said:0:400}"; exit 1; }
  [[ $said == *'{ok,'* ]] || { echo "loading the changed modules failed: ${said:0:400}"; exit 1; }
  said=${said#*\"} said=${said%\"*}
  echo "loaded ${#changed[@]} changed module(s): $said"
else
  echo "no module changed"
fi
echo "$version" > /shipway/hot-version
