#!/bin/bash
# Hot upgrade of the Elixir release running in the replicas, none
# restarted. Run by Shipway with `docker exec` as the app user, as `bash
# -c`'s script: $1 the Shipway release number, $2 the mode.
#
# otp REL VSN STAGGER NAME...: an OTP release upgrade of every replica
# NAME (container names on the app's network) to release VSN of REL
# (_build/<env>/rel/<name>), run in ONE replica for all of them (a
# `docker exec` costs 0.1-0.3 s of the host's CPU: one, not one each). The
# slug's upgrade artefact (.shipway-upgrade.tar: the new releases/VSN/ and
# applications) is on stdin. This replica's node, told by erl_call (a C
# client: no BEAM booted), hands it to each node over the distribution
# (hidden connections: no cluster is formed, `global` is not synced).
# Each node stages it at low process priority (files moved beside the
# running release, release_handler:set_unpacked: no running process is
# touched); once all are staged, all switch: install_release (suspend,
# code_change/3, resume) and make_permanent. STAGGER true stages one node
# after the other (the switch stays simultaneous). A stage refused or
# failed anywhere switches none. Prints NAME|CODE|TEXT per replica (CODE
# as the exit statuses below) and timing lines.
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
node() {  # erl_call to the node running here, Erlang expressions on stdin
  "$erl_call" -name "$RELEASE_NODE" -c "$RELEASE_COOKIE" -timeout 120 -e
}
[[ $version =~ ^[0-9]+$ ]] || refuse "not a release number: $version"

if [ "$mode" = otp ]; then
  rel=$1 vsn=$2 stagger=$3
  shift 3
  # They go into paths and Erlang expressions: plain only.
  [[ $rel =~ ^_build/[A-Za-z0-9_.-]+/rel/[A-Za-z0-9_.-]+$ && $rel != *..* \
     && $vsn =~ ^[A-Za-z0-9._+-]+$ && $vsn != *..* && ($stagger == true || $stagger == false) ]] \
    || refuse "not hot-upgradable: the release's name or version is not plain"
  targets=
  for t in "$@"; do
    [[ $t =~ ^[A-Za-z0-9_.-]+$ ]] || refuse "not a replica name: $t"
    targets+="\"$t\","
  done
  [ -d "/app/$rel" ] || refuse "the release name changed"
  tarfile=/app/.shipway-upgrade.$$.tar
  trap 'rm -f "$tarfile"' EXIT
  trap 'exit 143' TERM  # a timeout's SIGTERM runs the EXIT trap too
  cat > "$tarfile"
  received=$EPOCHREALTIME
  status=0
  # A node whose install fails after the point of no return reboots on the
  # old release: its call then gets no answer (code 4). Characters by
  # number in the expression: the here-document expands $ and \.
  said=$(node 2>&1 <<EOS
W0 = os:system_time(microsecond), T0 = erlang:monotonic_time(microsecond),
Ms = fun(T) -> (erlang:monotonic_time(microsecond) - T) div 1000 end,
Vsn = "$vsn", Rel = "$rel", Root = "/app/$rel", Name = filename:basename(Rel),
Version = "$version", Targets = [${targets%,}], Stagger = $stagger,
Switch = fun() ->
  S0 = erlang:monotonic_time(microsecond),
  case release_handler:install_release(Vsn) of
    {ok, _, _} ->
      I = Ms(S0),
      ok = release_handler:make_permanent(Vsn),
      ok = file:write_file("/shipway/hot-version", Version ++ [10]),
      {installed, I, Ms(S0) - I};
    Failed ->
      release_handler:remove_release(Vsn),
      {failed, Failed}
  end
end,
% The artefact read once, here: only lib/ and releases/Vsn/ of the release
% go to the nodes, which write them themselves (raw files: not through the
% file server), with their modes and no times (erl_tar:extract to disk took
% 60-150 ms a node for 160 KB on the busy host; this a few ms).
% (In a fun: the funs sent to the nodes carry every variable bound
% before them, which must not be the whole tar.)
Files = (fun() ->
  {ok, Tar} = file:read_file("$tarfile"),
  {ok, Table} = erl_tar:table({binary, Tar}, [verbose]),
  Modes = maps:from_list([{element(1, T), element(5, T)} || T <- Table]),
  Wanted = [Rel ++ "/lib/", Rel ++ "/releases/" ++ Vsn ++ "/"],
  {ok, InTar} = erl_tar:extract({binary, Tar}, [memory]),
  [{F, B, maps:get(F, Modes, 8#644)} || {F, B} <- InTar, lists:any(fun(P) -> lists:prefix(P, F) end, Wanted)]
end)(),
[Base | _] = string:split(atom_to_list(node()), "@"),
Reach = fun(C) ->
  case inet:getaddr(C, inet) of
    {ok, A} ->
      N = list_to_atom(Base ++ "@" ++ inet:ntoa(A)),
      case N =:= node() orelse lists:member(N, nodes(connected))
           orelse net_kernel:hidden_connect_node(N) of
        true -> N;
        _ -> {unreachable, N}
      end;
    Error -> {unresolved, Error}
  end
end,
Was = nodes(connected),
Nodes = [{C, Reach(C)} || C <- Targets],
T1 = Ms(T0),
Stage = fun() ->
  process_flag(priority, low),
  S0 = erlang:monotonic_time(microsecond),
  Next = "/app/.shipway-next." ++ os:getpid(),
  Releases = release_handler:which_releases(),
  Cur = case [V || {_, V, _, current} <- Releases] ++ [V || {_, V, _, permanent} <- Releases] of
          [V | _] -> V; [] -> "none" end,
  Here = fun(L) -> filelib:is_dir(filename:join([Root, "lib", L])) end,
  New = filename:join(Next, Rel),
  try
    case {filelib:is_dir(Root), filelib:is_regular(filename:join([Root, "releases", "RELEASES"]))} of
      {false, _} -> {refused, "the release name changed"};
      {_, false} -> {refused, "the running release has no releases/RELEASES (built before OTP hot upgrades)"};
      _ when Cur =:= Vsn -> {refused, "release " ++ Vsn ++ " runs already"};
      _ ->
        file:del_dir_r(Next),
        [ok = filelib:ensure_dir(filename:join([Next, D, "x"])) || D <- lists:usort([filename:dirname(F) || {F, _, _} <- Files])],
        [begin
           P = filename:join(Next, F),
           ok = file:write_file(P, B, [raw]),
           (M band 8#111) =:= 0 orelse file:change_mode(P, M band 8#777)
         end || {F, B, M} <- Files],
        S1 = Ms(S0),
        {ok, [{Vsn, UpFrom, _}]} = file:consult(filename:join([New, "releases", Vsn, "relup"])),
        {ok, [{release, _, _, Apps}]} = file:consult(filename:join([New, "releases", Vsn, Name ++ ".rel"])),
        Libs = [atom_to_list(element(1, A)) ++ "-" ++ element(2, A) || A <- Apps],
        Missing = [L || L <- Libs, not Here(L), not filelib:is_dir(filename:join([New, "lib", L]))],
        case {lists:keymember(Cur, 1, UpFrom), Missing} of
          {false, _} ->
            {refused, "the release version changed (" ++ Cur ++ " to " ++ Vsn ++
                      ") but the build made no relup from " ++ Cur};
          {_, [_ | _]} ->
            {refused, "the upgrade lacks applications the running release does not have: " ++
                      lists:join(" ", Missing)};
          _ ->
            [ok = file:rename(filename:join([New, "lib", L]), filename:join([Root, "lib", L]))
             || L <- Libs, not Here(L)],
            file:del_dir_r(filename:join([Root, "releases", Vsn])),
            ok = file:rename(filename:join([New, "releases", Vsn]), filename:join([Root, "releases", Vsn])),
            S2 = Ms(S0),
            case release_handler:set_unpacked(filename:join([Root, "releases", Vsn, Name ++ ".rel"]), []) of
              {ok, _} -> {staged, Cur, [S1, S2, Ms(S0)]};
              Other -> {failed, Other}
            end
        end
    end
  after
    file:del_dir_r(Next)
  end
end,
Call = fun(F, Ns) when Stagger ->
             [{C, try erpc:call(N, F, 120000) catch K:E -> {error, {K, E}} end} || {C, N} <- Ns];
          (F, Ns) ->
             Reqs = [{C, erpc:send_request(N, F)} || {C, N} <- Ns],
             [{C, try erpc:receive_response(R, 120000) catch K:E -> {error, {K, E}} end} || {C, R} <- Reqs]
       end,
{Results, T2, T3} =
  case [C || {C, N} <- Nodes, not is_atom(N)] of
    [_ | _] ->
      {[{C, if is_atom(N) -> {refused, "another replica's node cannot be reached"};
               true -> {refused, io_lib:format("its node cannot be reached: ~0p", [N])} end}
        || {C, N} <- Nodes], Ms(T0), Ms(T0)};
    [] ->
      Staged = Call(Stage, Nodes),
      S = Ms(T0),
      case [C || {C, R} <- Staged, element(1, R) =/= staged] of
        [] -> {lists:zipwith(fun({C, {staged, From, SMs}}, {C, R}) -> {C, {From, SMs, R}} end,
                             Staged, Call(Switch, Nodes)), S, Ms(T0)};
        _ ->
          [catch erpc:call(N, release_handler, remove_release, [Vsn], 60000)
           || {{C, N}, {C, {staged, _, _}}} <- lists:zip(Nodes, Staged)],
          {[{C, case R of {staged, _, _} -> {refused, "another replica could not stage it"}; _ -> R end}
            || {C, R} <- Staged], S, S}
      end
  end,
% The connections made here for the upgrade are closed again.
[erlang:disconnect_node(N) || {_, N} <- Nodes, is_atom(N), N =/= node(), not lists:member(N, Was)],
Clean = fun(Text) -> [if Ch < 32; Ch > 126 -> 63; Ch =:= 34; Ch =:= 92; Ch =:= 59; Ch =:= 124 -> 39;
                         true -> Ch end || Ch <- lists:flatten(Text)] end,
Line = fun({C, {refused, Why}}) -> [C, "|3|", Clean(Why)];
          ({C, {From, SMs, {installed, I, P}}}) ->
            [C, "|0|", io_lib:format("OTP release upgrade ~s -> ~s (release_handler: code_change/3 ran): "
                                     "staged ~b ms (unpacked ~b, moved into place ~b, set_unpacked ~b), install_release ~b ms, "
                                     "make_permanent ~b ms",
                                     [From, Vsn, lists:last(SMs), hd(SMs), lists:nth(2, SMs) - hd(SMs),
                                      lists:last(SMs) - lists:nth(2, SMs), I, P])];
          ({C, {_, _, Failed}}) -> [C, "|4|", Clean(io_lib:format("install_release failed: ~0p", [Failed]))];
          ({C, Other}) -> [C, "|1|", Clean(io_lib:format("staging failed: ~0p", [Other]))]
       end,
lists:flatten([[[Line(R), ";"] || R <- Results], io_lib:format("timing|~b|~b|~b|~b", [W0, T1, T2, T3])]).
EOS
  ) || status=$?
  if [ "$status" != 0 ] || ! [[ $said =~ ^\{ok,\ ?\"(.*timing\|[0-9|]+)\"\}$ ]]; then
    echo "the upgrade did not complete (erl_call exit $status): ${said:0:400}"
    exit 1
  fi
  worst=0
  IFS=';' read -ra lines <<<"${BASH_REMATCH[1]}"
  for line in "${lines[@]}"; do
    echo "$line"
    case $line in
      *"|4|"*) worst=4 ;;
      *"|1|"*) [ $worst = 4 ] || worst=1 ;;
      *"|3|"*) [ $worst != 0 ] || worst=3 ;;
    esac
  done
  echo "conductor|${started/./}|${received/./}|${EPOCHREALTIME/./}"
  exit $worst
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
