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
curl -fsS --max-time 300 "$url" | tar -xzf - -C "$next"

old_bin=$(release_bin /app)
new_bin=$(release_bin "$next")
[ -n "$old_bin" ] && [ -n "$new_bin" ] || refuse "no Elixir release (mix release) to upgrade"
[ "${old_bin#/app/}" = "${new_bin#"$next"/}" ] || refuse "the release name changed"
old_rel=$(dirname "$(dirname "$old_bin")")
new_rel=$(dirname "$(dirname "$new_bin")")
# A higher release version: an OTP release upgrade through release_handler,
# with the relup and tarball the build made (buildpacks/elixir). Processes
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
  [ -f "$new_rel/releases/$new_vsn/relup" ] && [ -f "$new_rel/releases/$name.tar.gz" ] \
    && grep -q "\"$running_vsn\"" "$new_rel/releases/$new_vsn/relup" \
    || refuse "the release version changed ($running_vsn to $new_vsn) but the build made no relup from $running_vsn"
  [ -f "$old_rel/releases/RELEASES" ] \
    || refuse "the running release has no releases/RELEASES (built before OTP hot upgrades)"
  echo "OTP release upgrade $running_vsn -> $new_vsn (release_handler: code_change/3 runs)"
  cp "$new_rel/releases/$name.tar.gz" "$old_rel/releases/$name.tar.gz.shipway-new"
  mv -f "$old_rel/releases/$name.tar.gz.shipway-new" "$old_rel/releases/$name.tar.gz"
  # `bin/APP rpc` exits 0 when the node went down under the call (what
  # release_handler does when an instruction fails after the point of no
  # return: the node reboots on the old release), hence the success line.
  status=0
  said=$("$old_bin" rpc "vsn = ~c\"$new_vsn\"
    t = System.monotonic_time(:millisecond)
    case :release_handler.unpack_release(~c\"$name\") do
      {:ok, ^vsn} -> :ok
      {:error, {:existing_release, ^vsn}} -> :ok
      other -> raise \"unpack_release failed: #{inspect(other)}\"
    end
    case :release_handler.install_release(vsn) do
      {:ok, _, _} -> :ok
      other ->
        :release_handler.remove_release(vsn)
        raise \"install_release failed, the node stays on $running_vsn: #{inspect(other)}\"
    end
    :ok = :release_handler.make_permanent(vsn)
    IO.puts(\"release $new_vsn installed and permanent in #{System.monotonic_time(:millisecond) - t} ms\")" 2>&1) \
    || status=$?
  [ -z "$said" ] || echo "$said"
  if [ "$status" != 0 ] || ! grep -q "^release $new_vsn installed and permanent" <<<"$said"; then
    echo "install_release failed: the node stays on (or went back to) release $running_vsn"
    exit 4
  fi
  echo "$version" > /shipway/hot-version
  exit 0
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
