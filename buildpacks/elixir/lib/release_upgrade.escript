#!/usr/bin/env escript
%% -*- erlang -*-
%%! -noshell
%% Release-handler files for a `mix release`, run with the *system* erl
%% (the release's own erts cannot find a boot file for systools).
%%
%%   releases ROOT RELDIR NAME VSN
%%       writes RELDIR/releases/RELEASES naming the release as it will sit at
%%       ROOT in the replica: release_handler needs it before the node's
%%       first boot, or it invents an entry with no libraries.
%%   upgrade OLDREL NEWREL NAME OLDVSN NEWVSN
%%       an .appup for each application whose version changed (one the app
%%       ships in its ebin or priv is used as it is), then the relup
%%       (systools:make_relup) and NEWREL/releases/NAME.tar.gz with mix's
%%       own files (env.sh, vm.args...), which `bin/NAME` needs after
%%       make_permanent, and releases/NEWVSN/shipway-upgrade-libs: the
%%       applications OLDREL lacks (the buildpack's upgrade artefact takes
%%       them). Exit 3 with the reason on the last line when the
%%       change cannot be hot-loaded (ERTS changed, an application removed).
-mode(compile).

main(["releases", Root, RelDir, Name, Vsn]) ->
    {Erts, Apps} = read_rel(rel_file(RelDir, Name, Vsn)),
    Libs = [{A, V, filename:join([Root, "lib", atom_to_list(A) ++ "-" ++ V])} || {A, V} <- Apps],
    Entry = {release, Name, Vsn, Erts, Libs, permanent},
    ok = file:write_file(filename:join([RelDir, "releases", "RELEASES"]),
                         io_lib:format("~p.~n", [[Entry]]));
main(["upgrade", OldRel, NewRel, Name, OldVsn, NewVsn]) ->
    {OldErts, OldApps} = read_rel(rel_file(OldRel, Name, OldVsn)),
    {NewErts, NewApps} = read_rel(rel_file(NewRel, Name, NewVsn)),
    OldErts =:= NewErts orelse refuse("ERTS changed (~s to ~s)", [OldErts, NewErts]),
    [refuse("application ~s removed", [A]) || {A, _} <- OldApps, not lists:keymember(A, 1, NewApps)],
    [appup(NewRel, A, OV, NV, lib(OldRel, A, OV), lib(NewRel, A, NV))
     || {A, NV} <- NewApps, {_, OV} <- [lists:keyfind(A, 1, OldApps)], OV =/= NV],
    NewDir = filename:join([NewRel, "releases", NewVsn]),
    % The applications the running release lacks: with releases/NewVsn,
    % all a replica needs to install the upgrade (the buildpack packs them
    % into the slug's small upgrade artefact).
    New = [["lib/", atom_to_list(A), "-", V, "\n"] || {A, V} <- NewApps, not lists:member({A, V}, OldApps)],
    ok = file:write_file(filename:join(NewDir, "shipway-upgrade-libs"), New),
    % systools wants NAME.boot beside NAME.rel; mix writes start.boot.
    Boot = filename:join(NewDir, Name ++ ".boot"),
    filelib:is_file(Boot) orelse ({ok, _} = file:copy(filename:join(NewDir, "start.boot"), Boot)),
    OldPath = filelib:wildcard(filename:join([OldRel, "lib", "*", "ebin"])),
    NewPath = filelib:wildcard(filename:join([NewRel, "lib", "*", "ebin"])),
    Base = fun(Rel, V) -> filename:rootname(rel_file(Rel, Name, V)) end,
    check(systools:make_relup(Base(NewRel, NewVsn), [Base(OldRel, OldVsn)], [Base(OldRel, OldVsn)],
                              [{path, NewPath ++ OldPath}, {outdir, NewDir}, silent, no_warn_sasl])),
    Extra = [{F, filename:join(["releases", NewVsn, rel_path(NewDir, F)])}
             || F <- filelib:wildcard(filename:join(NewDir, "**")), filelib:is_regular(F),
                not lists:member(filename:basename(F), [Name ++ ".rel", Name ++ ".boot", "start.boot",
                                                        "relup", "sys.config", "shipway-upgrade-libs"])],
    check(systools:make_tar(Base(NewRel, NewVsn),
                            [{path, NewPath}, {outdir, filename:join(NewRel, "releases")},
                             {extra_files, Extra}, silent, no_warn_sasl])),
    file:delete(Boot),
    io:format("relup and releases/~s.tar.gz made (~s to ~s)~n", [Name, OldVsn, NewVsn]).

refuse(Format, Args) ->
    io:format("not hot-upgradable: " ++ Format ++ "~n", Args),
    halt(3).

check(ok) -> ok;
check({ok, _Relup, _Mod, _Warnings}) -> ok;
check({ok, _Mod, _Warnings}) -> ok;
check({error, Mod, Reason}) ->
    io:format("relup failed: ~ts~n", [Mod:format_error(Reason)]),
    halt(1);
check(Other) -> io:format("relup failed: ~p~n", [Other]), halt(1).

rel_file(Rel, Name, Vsn) -> filename:join([Rel, "releases", Vsn, Name ++ ".rel"]).
lib(Rel, App, Vsn) -> filename:join([Rel, "lib", atom_to_list(App) ++ "-" ++ Vsn]).
rel_path(Dir, File) -> string:prefix(File, Dir ++ "/").

read_rel(File) ->
    {ok, [{release, _, {erts, Erts}, Apps}]} = file:consult(File),
    {Erts, [{element(1, A), element(2, A)} || A <- Apps]}.

%% The application's own appup (ebin, then priv, as Distillery takes it),
%% else one made from the two versions' modules.
appup(_NewRel, App, OldVsn, NewVsn, OldLib, NewLib) ->
    Target = filename:join([NewLib, "ebin", atom_to_list(App) ++ ".appup"]),
    Shipped = filename:join([NewLib, "priv", atom_to_list(App) ++ ".appup"]),
    case {filelib:is_regular(Target), filelib:is_regular(Shipped)} of
        {true, _} -> io:format("~s: the application's own appup~n", [App]);
        {false, true} -> {ok, _} = file:copy(Shipped, Target),
                         io:format("~s: the application's own appup (priv)~n", [App]);
        {false, false} ->
            {Up, Down} = instructions(filename:join(OldLib, "ebin"), filename:join(NewLib, "ebin")),
            ok = file:write_file(Target, io_lib:format("~p.~n", [{NewVsn, [{OldVsn, Up}], [{OldVsn, Down}]}])),
            io:format("~s ~s -> ~s: appup ~p~n", [App, OldVsn, NewVsn, Up])
    end.

instructions(OldEbin, NewEbin) ->
    Old = modules(OldEbin), New = modules(NewEbin),
    Added = New -- Old, Removed = Old -- New,
    Changed = [M || M <- New, lists:member(M, Old), md5(OldEbin, M) =/= md5(NewEbin, M)],
    Update = [change(NewEbin, M, Changed) || M <- Changed],
    {[{add_module, M} || M <- Added] ++ Update ++ [{delete_module, M} || M <- Removed],
     [{add_module, M} || M <- Removed] ++ Update ++ [{delete_module, M} || M <- Added]}.

modules(Ebin) ->
    [list_to_atom(filename:basename(F, ".beam")) || F <- filelib:wildcard(filename:join(Ebin, "*.beam"))].

beam(Ebin, M) -> filename:join(Ebin, atom_to_list(M) ++ ".beam").

md5(Ebin, M) -> {ok, {_, Md5}} = beam_lib:md5(beam(Ebin, M)), Md5.

%% Modules of OTP processes are updated with their processes suspended and
%% code_change called; the others are loaded. Each waits for the changed
%% modules it calls (systools orders by these dependencies).
change(Ebin, M, Changed) ->
    {ok, {_, [{attributes, Attrs}, {imports, Imports}]}} = beam_lib:chunks(beam(Ebin, M), [attributes, imports]),
    Behaviours = lists:append([V || {K, V} <- Attrs, K =:= behaviour orelse K =:= behavior]),
    Deps = lists:usort([D || {D, _, _} <- Imports, D =/= M, lists:member(D, Changed)]),
    Supervisor = lists:member(supervisor, Behaviours) orelse lists:member('Elixir.Supervisor', Behaviours),
    Process = [B || B <- Behaviours, lists:member(B, [gen_server, gen_statem, gen_event, gen_fsm,
                                                      'Elixir.GenServer', 'Elixir.GenEvent'])] =/= [],
    if Supervisor -> {update, M, supervisor};
       Process -> {update, M, {advanced, []}, Deps};
       true -> {load_module, M, Deps}
    end.
