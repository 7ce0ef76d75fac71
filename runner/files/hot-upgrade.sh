#!/bin/bash
# Hot upgrade of the Elixir release running in this replica to the slug at
# $1 (a signed URL), release $2, without restarting the node. With $3 =
# artefact-on-stdin, the slug's upgrade artefact (see below) is on stdin.
#
# With a higher release version (mix.exs), an OTP release upgrade: the
# artefact's files are moved beside the running release and the node is
# told over its distribution by erl_call (a C client: no BEAM booted) to
# install the relup with release_handler; the slug itself is not fetched.
# Otherwise the new slug is unpacked beside /app, the beams that differ are
# copied into the running release and loaded in the node (purge the old
# code, load the new). Processes keep their state and connections and pick
# the new code up at their next fully-qualified call, as with `c:l/1` in a
# shell.
#
# Exit 3: not hot-upgradable (not a release, or anything but module code
# changed: the release name, ERTS or an application's version); the runner
# then deploys with a restart. Exit 4: install_release failed, the node is
# on the old release. Run by Shipway with `docker exec` as the app user, as
# `bash -c`'s script. Every process started here costs tens of ms on a
# busy host, times the replicas at once: the OTP path starts two (tar,
# erl_call).
set -euo pipefail
url=$1 version=$2 artefact=${3:-}
set -a
# shellcheck disable=SC1091
. /shipway/env
set +a

release_bin() {  # bin: the release's start script under $1, if any (no subshell)
  local b
  bin=
  for b in "$1"/_build/*/rel/*/bin/*; do
    case "$b" in *.bat) ;; *) [ -f "$b" ] && [ -x "$b" ] && { bin=$b; return 0; } ;; esac
  done
  return 0
}
refuse() { echo "$*"; exit 3; }
vsn_of() {  # vsn: the release version in start_erl.data ("<erts> <vsn>")
  local erts
  read -r erts vsn < "$1" || [ -n "$vsn" ]  # no newline at its end
}
ms() { now_ms=$(( (${EPOCHREALTIME/./} - ${started/./}) / 1000 )); }
started=$EPOCHREALTIME
gunzip=(-z); [ -x /usr/bin/pigz ] && gunzip=(-I pigz)
erl_call=/usr/bin/erl_call; [ -x $erl_call ] || erl_call=/usr/lib/erlang/bin/erl_call
node() {  # erl_call to the node running here, Erlang expressions on stdin
  "$erl_call" -name "$RELEASE_NODE" -c "$RELEASE_COOKIE" -timeout 120 -e
}
# The upgrade artefact goes under /app (the file system of the running
# release, so that the node moves its files into place with renames); the
# whole slug, for the module-reload path, under /tmp.
next=/app/.shipway-next.$$
trap '[ ! -e "$next" ] || rm -rf "$next"' EXIT
trap 'exit 143' TERM  # a timeout's SIGTERM runs the EXIT trap too
whole=false
fetch() {  # the whole slug into $next
  rm -rf "$next"
  next=/tmp/shipway-next.$$
  mkdir -p "$next"
  curl -fsS --max-time 300 "$url" | tar "${gunzip[@]}" -xf - -C "$next"
  whole=true
}
release_bin /app
old_bin=$bin
[ -n "$old_bin" ] || refuse "no Elixir release (mix release) to upgrade"
# The upgrade artefact the Elixir buildpack packs at the slug's head
# (.shipway-upgrade.tar: the release's bin/ and start_erl.data, and with a
# relup the new releases/<vsn>/ and the applications the previous release
# lacks), read by the runner on the host and given on stdin; without one
# (a slug built before it existed), the whole slug.
if [ "$artefact" = artefact-on-stdin ]; then
  tar -xf - --one-top-level="$next" || fetch
else
  fetch
fi
ms; fetched=$now_ms
release_bin "$next"
new_bin=$bin
[ -n "$new_bin" ] || refuse "no Elixir release (mix release) to upgrade"
[ "${old_bin#/app/}" = "${new_bin#"$next"/}" ] || refuse "the release name changed"
old_rel=${old_bin%/bin/*}
new_rel=${new_bin%/bin/*}
# A higher release version: an OTP release upgrade through release_handler,
# with the appups and relup the build made (buildpacks/elixir). Processes
# are suspended, their code_change/3 migrates their state, and they resume;
# the node keeps its connections. make_permanent makes the node's next boot
# (and `bin/APP`) the new release. An install that fails leaves the node on
# the old release (release_handler restores it) and exits 4: the runner
# then restarts the replicas.
name=${old_bin##*/}
vsn_of "$old_rel/releases/start_erl.data"; running_vsn=$vsn
vsn_of "$new_rel/releases/start_erl.data"; new_vsn=$vsn
# Both go into paths and into the Erlang expressions below: plain only.
[[ $name =~ ^[A-Za-z0-9_.-]+$ && $new_vsn =~ ^[A-Za-z0-9._+-]+$ && $new_vsn != *..* ]] \
  || refuse "not hot-upgradable: the release's name or version is not plain"
if [ "$running_vsn" != "$new_vsn" ]; then
  if [ -f "$new_rel/releases/shipway-no-hot-upgrade" ]; then
    read -r reason < "$new_rel/releases/shipway-no-hot-upgrade" || true
    refuse "$reason ($running_vsn to $new_vsn)"
  fi
  relup=
  [ ! -f "$new_rel/releases/$new_vsn/relup" ] || read -r -d '' relup < "$new_rel/releases/$new_vsn/relup" || true
  [[ $relup == *"\"$running_vsn\""* ]] \
    || refuse "the release version changed ($running_vsn to $new_vsn) but the build made no relup from $running_vsn"
  [ -f "$old_rel/releases/RELEASES" ] \
    || refuse "the running release has no releases/RELEASES (built before OTP hot upgrades)"
  echo "OTP release upgrade $running_vsn -> $new_vsn (release_handler: code_change/3 runs)"
  status=0
  # In the node, over its distribution (erl_call, a C client: no BEAM
  # booted): the new release's applications and releases/<vsn> moved
  # beside the running ones (release_handler:set_unpacked then takes them
  # as if unpacked from the tarball; no file of the running release is
  # written), once every application of the new release is known to be
  # there (the artefact is made against the previous build, which may not
  # be what runs). An instruction failing after the point of no return
  # reboots the node on the old release: the call then gets no answer
  # (exit 4 below).
  said=$(node 2>&1 <<EOS
Vsn = "$new_vsn", New = "$new_rel", Root = "$old_rel", Next = "$next",
T0 = erlang:monotonic_time(microsecond),
Ms = fun() -> (erlang:monotonic_time(microsecond) - T0) div 1000 end,
Rel = filename:join([Root, "releases", Vsn, "$name.rel"]),
{ok, [{release, _, _, Apps}]} = file:consult(filename:join([New, "releases", Vsn, "$name.rel"])),
Libs = [atom_to_list(element(1, A)) ++ "-" ++ element(2, A) || A <- Apps],
Here = fun(L) -> filelib:is_dir(filename:join([Root, "lib", L])) end,
case [L || L <- Libs, not Here(L), not filelib:is_dir(filename:join([New, "lib", L]))] of
  [_ | _] = Missing -> {missing, Missing};
  [] ->
    [ok = file:rename(filename:join([New, "lib", L]), filename:join([Root, "lib", L]))
     || L <- Libs, not Here(L)],
    file:del_dir_r(filename:join([Root, "releases", Vsn])),
    ok = file:rename(filename:join([New, "releases", Vsn]), filename:join([Root, "releases", Vsn])),
    file:del_dir_r(Next),
    T1 = Ms(),
    U = release_handler:set_unpacked(Rel, []),
    T2 = Ms(),
    case {U, release_handler:install_release(Vsn)} of
      {{ok, _}, {ok, _, _}} ->
        T3 = Ms(),
        ok = release_handler:make_permanent(Vsn),
        {installed, T1, T2, T3, Ms()};
      Failed ->
        release_handler:remove_release(Vsn),
        {failed, Failed}
    end
end.
EOS
  ) || status=$?
  if [ "$status" = 0 ] && [[ $said =~ \{installed,\ ?([0-9]+),\ ?([0-9]+),\ ?([0-9]+),\ ?([0-9]+)\} ]]; then
    r=("${BASH_REMATCH[@]}")
    ms
    echo "release $new_vsn installed and permanent in $now_ms ms: artefact unpacked $fetched ms," \
      "erl_call $((now_ms - fetched)) ms (files moved into place ${r[1]} ms," \
      "set_unpacked $((r[2] - r[1])) ms, install_release $((r[3] - r[2])) ms," \
      "make_permanent $((r[4] - r[3])) ms)"
  elif [ "$status" = 0 ] && [[ $said == *"{missing,"* ]]; then
    refuse "the upgrade lacks applications the running release does not have: ${said:0:300}"
  else
    echo "release_handler said: ${said:0:400}"
    echo "install_release failed: the node stays on (or went back to) release $running_vsn"
    exit 4
  fi
  echo "$version" > /shipway/hot-version
  exit 0
fi
echo "no version bump ($running_vsn): module reload (code_change/3 is not called)"
if ! $whole; then
  fetch
  release_bin "$next"
  new_rel=${bin%/bin/*}
  [ "${old_rel#/app/}" = "${new_rel#"$next"/}" ] || refuse "the release name changed"
fi

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
  mods=$(printf "'%s'," "${changed[@]}")
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
