#!/bin/bash
# Hot upgrade of the Elixir release running in this replica to the slug at
# $1 (a signed URL), release $2, without restarting the node: the new slug is
# unpacked beside /app, the beams that differ are copied into the running
# release and loaded in the node (`bin/APP rpc`: purge the old code, load the
# new). Processes keep their state and connections and pick the new code up
# at their next fully-qualified call, as with `c:l/1` in a shell.
#
# Exit 3: not hot-upgradable (not a release, or anything but module code
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
