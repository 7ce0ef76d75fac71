#!/bin/bash
# Hot upgrade of the Elixir release running in this replica to the slug at
# $1 (a signed URL), release $2, without restarting the node: the new slug is
# unpacked beside /app, the beams that differ are copied into the running
# release and loaded in the node (`bin/APP rpc`: purge the old code, load the
# new). Processes keep their state and connections and pick the new code up
# at their next fully-qualified call, as with `c:l/1` in a shell.
#
# With a higher release version (mix.exs), an OTP release upgrade instead
# (below). Exit 3: not hot-upgradable (not a release, or anything but module code
# changed: the release name, ERTS or an application's version); the runner
# then deploys with a restart. Run by Shipway with `docker exec` as the app
# user; it copies this file into the container first.
set -euo pipefail
url=$1 version=$2
set -a
# shellcheck disable=SC1091
. /shipway/env
set +a

release_bin() {  # the release's start script under $1, if any
  local bin
  for bin in "$1"/_build/*/rel/*/bin/*; do
    case "$bin" in *.bat) ;; *) [ -f "$bin" ] && [ -x "$bin" ] && { echo "$bin"; return; } ;; esac
  done
}
refuse() { echo "$*"; exit 3; }

next=$(mktemp -d /tmp/shipway-next.XXXXXX)
trap 'rm -rf "$next"' EXIT
started=$EPOCHREALTIME
ms() { echo $(( (${EPOCHREALTIME/./} - ${1/./}) / 1000 )); }
gunzip=(-z); command -v pigz >/dev/null && gunzip=(-I pigz)
fetch() {  # the slug into $next, tar's options and member patterns in "$@"
  find "$next" -mindepth 1 -delete
  curl -fsS --max-time 300 "$url" | tar "${gunzip[@]}" -xf - -C "$next" "$@"
}
old_bin=$(release_bin /app)
[ -n "$old_bin" ] || refuse "no Elixir release (mix release) to upgrade"
old_rel=$(dirname "$(dirname "$old_bin")")
# First only what an OTP release upgrade takes: the release's bin/ and
# releases/ (not the upgrade tarball: the new files are taken from the slug
# itself, with no second unpacking in the node) and its applications at
# versions the running release does not have. The module-reload path
# fetches the whole slug afterwards.
partial=(--exclude='*/releases/*.tar.gz' --exclude='*/erts-*')
for lib in "$old_rel"/lib/*/; do lib=${lib%/}; partial+=(--exclude="*/rel/*/lib/${lib##*/}"); done
fetch "${partial[@]}" --wildcards '*_build/*/rel/*/bin/*' '*_build/*/rel/*/releases/*' \
  '*_build/*/rel/*/lib/*' 2>/dev/null || true
new_bin=$(release_bin "$next")
[ -n "$new_bin" ] || refuse "no Elixir release (mix release) to upgrade"
[ "${old_bin#/app/}" = "${new_bin#"$next"/}" ] || refuse "the release name changed"
old_rel=$(dirname "$(dirname "$old_bin")")
new_rel=$(dirname "$(dirname "$new_bin")")
# A higher release version: an OTP release upgrade through release_handler,
# with the appups and relup the build made (buildpacks/elixir). Processes
# are suspended, their code_change/3 migrates their state, and they resume;
# the node keeps its connections. make_permanent makes the node's next boot
# (and `bin/APP`) the new release. An install that fails leaves the node on
# the old release (release_handler restores it) and exits 4: the runner
# then restarts the replicas.
name=$(basename "$old_bin")
running_vsn=$(cut -d' ' -f2 "$old_rel/releases/start_erl.data")
new_vsn=$(cut -d' ' -f2 "$new_rel/releases/start_erl.data")
if [ "$running_vsn" != "$new_vsn" ]; then
  [ ! -f "$new_rel/releases/shipway-no-hot-upgrade" ] \
    || refuse "$(cat "$new_rel/releases/shipway-no-hot-upgrade") ($running_vsn to $new_vsn)"
  [ -f "$new_rel/releases/$new_vsn/relup" ] \
    && grep -q "\"$running_vsn\"" "$new_rel/releases/$new_vsn/relup" \
    || refuse "the release version changed ($running_vsn to $new_vsn) but the build made no relup from $running_vsn"
  [ -f "$old_rel/releases/RELEASES" ] \
    || refuse "the running release has no releases/RELEASES (built before OTP hot upgrades)"
  echo "OTP release upgrade $running_vsn -> $new_vsn (release_handler: code_change/3 runs)"
  # The new release's applications and releases/<vsn> put beside the
  # running ones (release_handler:set_unpacked then takes them as if
  # unpacked from the tarball), then the node told over its distribution
  # by erl_call (a C client: no second BEAM booted per replica).
  for lib in "$new_rel"/lib/*/; do
    lib=${lib%/}
    [ -e "$old_rel/lib/${lib##*/}" ] || cp -a "$lib" "$old_rel/lib/${lib##*/}"
  done
  rm -rf "$old_rel/releases/$new_vsn"
  cp -a "$new_rel/releases/$new_vsn" "$old_rel/releases/$new_vsn"
  echo "slug fetched and release $new_vsn put in place in $(ms "$started") ms"
  erl_call=$(command -v erl_call || echo /usr/lib/erlang/bin/erl_call)
  status=0
  # An instruction failing after the point of no return reboots the node
  # on the old release: the call then gets no answer (exit 4 below).
  said=$("$erl_call" -name "$RELEASE_NODE" -c "$RELEASE_COOKIE" -timeout 120 -e 2>&1 <<EOS
Vsn = "$new_vsn",
T = erlang:monotonic_time(millisecond),
Rel = filename:join([code:root_dir(), "releases", Vsn, "$name.rel"]),
U = release_handler:set_unpacked(Rel, []),
case {U, release_handler:install_release(Vsn)} of
  {{ok, _}, {ok, _, _}} ->
    ok = release_handler:make_permanent(Vsn),
    {installed, erlang:monotonic_time(millisecond) - T};
  Failed ->
    release_handler:remove_release(Vsn),
    {failed, Failed}
end.
EOS
  ) || status=$?
  if [ "$status" = 0 ] && [[ $said =~ \{installed,\ ?([0-9]+)\} ]]; then
    echo "release $new_vsn installed and permanent in ${BASH_REMATCH[1]} ms (release_handler)"
  else
    echo "release_handler said: ${said:0:400}"
    echo "install_release failed: the node stays on (or went back to) release $running_vsn"
    exit 4
  fi
  echo "$version" > /shipway/hot-version
  exit 0
fi
echo "no version bump ($running_vsn): module reload (code_change/3 is not called)"
fetch

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
  "$old_bin" rpc "mods = ~w(${changed[*]})a
    for m <- mods do
      :code.purge(m)
      {:module, ^m} = :code.load_file(m)
    end
    IO.puts(\"loaded #{length(mods)} changed module(s): #{Enum.map_join(mods, \", \", &inspect/1)}\")"
else
  echo "no module changed"
fi
echo "$version" > /shipway/hot-version
