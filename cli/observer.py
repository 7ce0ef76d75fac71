"""ps:observer (Gigalixir's): Erlang's observer on one replica's node, whose
distribution is reached through an SSH tunnel only.

The replica's node listens on a fixed distribution port (DIST_PORT, set by
the run container's entrypoint), which nothing publishes. The CLI opens one
SSH session to the replica through the git SSH gateway, as ps:ssh does,
that forwards a local port on 127.0.0.1 to that port and reads the node's
name and cookie from the replica's environment. A local hidden node then
dials the app's node without epmd: its epmd module (EPMD_MODULE) answers
127.0.0.1 and the tunnel's port for every node, because the app's node is
named APP@<replica address>, an address this machine cannot and must not
reach. The local node does not listen (`-dist_listen false`), so nothing
is opened on this machine but the tunnel's port.
"""
from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import click

from cli.client import seg
from cli.ps import ssh_argv
from cli.session import Session, api_command

# The replica's distribution port (runner/files/entrypoint.sh).
DIST_PORT = 9100
MODULE = "shipway_observer_epmd"
EPMD_MODULE = f"""\
-module({MODULE}).
%% Written by `shipway ps:observer`: every node is dialled at 127.0.0.1 on
%% the tunnel's port (-shipway_tunnel_port), whatever its host part says.
-export([start_link/0, register_node/2, register_node/3, port_please/2,
         port_please/3, address_please/3, names/0, names/1]).
start_link() -> ignore.
register_node(_Name, _Port) -> {{ok, 1}}.
register_node(_Name, _Port, _Family) -> {{ok, 1}}.
port_please(_Name, _Host) -> {{port, port(), 6}}.
port_please(_Name, _Host, _Timeout) -> {{port, port(), 6}}.
address_please(_Name, _Host, _Family) -> {{ok, {{127, 0, 0, 1}}, port(), 6}}.
names() -> {{error, address}}.
names(_Host) -> {{error, address}}.
port() ->
    {{ok, [[Port]]}} = init:get_argument(shipway_tunnel_port),
    list_to_integer(Port).
"""
# The remote side of the session: the node's name and cookie, then it
# lasts as long as the CLI keeps its stdin open.
# What the replica says is the app's to choose, and the node's name goes into
# an Erlang expression run on this machine: only plain names and cookies pass.
NODE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,200}@[A-Za-z0-9_.:-]{1,255}\Z")
COOKIE = re.compile(r"[A-Za-z0-9_.+/=-]{1,255}\Z")
REMOTE_INFO = ('printf "node=%s\\ncookie=%s\\nport=%s\\n" "${RELEASE_NODE:-}" '
               '"${RELEASE_COOKIE:-}" "${SHIPWAY_DIST_PORT:-}"; exec cat >/dev/null')


def module_dir() -> Path:
    """~/.shipway/observer, holding the epmd module's source (and beam)."""
    where = Path(os.path.expanduser("~/.shipway/observer"))
    where.mkdir(mode=0o700, parents=True, exist_ok=True)
    (where / f"{MODULE}.erl").write_text(EPMD_MODULE)
    return where


def erl_argv(node: str, cookie: str, port: int, where: Path, start_observer: bool = True,
             erl: str = "erl") -> list[str]:
    """The local hidden node's command line, dialling `node` through the
    tunnel at 127.0.0.1:`port`; with `start_observer`, observer on `node`
    (observer:start/1 from OTP 26, else observer's Nodes menu)."""
    argv = [erl, "-hidden", "-name", f"observer-{secrets.token_hex(3)}@127.0.0.1",
            "-setcookie", cookie, "-start_epmd", "false", "-dist_listen", "false",
            "-epmd_module", MODULE, "-shipway_tunnel_port", str(port), "-pa", str(where)]
    if start_observer:
        argv += ["-eval",
                 f"N = '{node}', pong = net_adm:ping(N), {{module, _}} = code:ensure_loaded(observer), "
                 "case erlang:function_exported(observer, start, 1) of "
                 "true -> observer:start(N); false -> observer:start() end."]
    return argv


def has_wx(erl: str) -> bool:
    """True when the local Erlang can draw observer (wx and observer present)."""
    check = ("halt(case {code:which(wx), code:which(observer)} of "
             "{non_existing, _} -> 1; {_, non_existing} -> 1; _ -> 0 end).")
    try:
        return subprocess.run([erl, "-noshell", "-eval", check], capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Tunnel:
    """The SSH session to the replica: its forwarded port and what the
    replica said (node, cookie, distribution port)."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.info: dict[str, str] = {}

    def read_info(self, timeout: float = 60) -> dict[str, str]:
        done = threading.Event()

        def read(out: IO[bytes]) -> None:
            for raw in out:
                key, _, value = raw.decode("utf-8", "replace").rstrip("\n").partition("=")
                self.info[key] = value
                if key == "port":
                    break
            done.set()

        assert self.proc.stdout is not None
        threading.Thread(target=read, args=(self.proc.stdout,), daemon=True).start()
        if not done.wait(timeout) or "port" not in self.info:
            self.close()
            raise click.ClickException("the SSH tunnel to the replica did not open "
                                       "(see ssh's message above)")
        return self.info

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()  # the remote `cat` ends, so does ssh
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.terminate()
                self.proc.wait(10)


def register(cli: click.Group) -> None:
    @api_command(cli, "ps:observer", app=True)
    @click.option("-r", "--replica", default=None,
                  help="A replica's container id, or its start (see `ps`); default: the first "
                       "web replica.")
    @click.option("-i", "--identity", default=None, type=click.Path(dir_okay=False),
                  help="Your SSH private key (default: ssh's own choice).")
    @click.option("-p", "--port", type=click.IntRange(1, 65535), default=None,
                  help="The tunnel's local port on 127.0.0.1 (default: a free one).")
    @click.option("--print", "print_only", is_flag=True,
                  help="Only open the tunnel and print the commands, even where Erlang "
                       "with wx is installed.")
    def observer(session: Session, replica: str | None, identity: str | None, port: int | None,
                 print_only: bool) -> None:
        """Erlang's observer on a replica's node, through an SSH tunnel to its
        distribution port (through the server's git SSH port, with the keys
        of `account:ssh_keys`); where Erlang with wx is missing, the tunnel
        stays open and the commands are printed."""
        info = session.client.call("GET", f"/apps/{seg(session.app)}")
        local = port or free_port()
        argv = ssh_argv(info["urls"]["git_ssh"], session.app or "", replica, identity,
                        [REMOTE_INFO], interactive=False, host_key=info.get("ssh_host_key"))
        argv[1:1] = ["-o", "ExitOnForwardFailure=yes",
                     "-L", f"127.0.0.1:{local}:127.0.0.1:{DIST_PORT}"]
        tunnel = Tunnel(argv)
        previous = signal.signal(signal.SIGTERM, _exit_on_term)
        try:
            said = tunnel.read_info()
            node, cookie = checked_info(said)
            if _observe(node, cookie, local, print_only):
                return
            try:  # the tunnel lasts until Ctrl-C (or until it breaks)
                code = tunnel.proc.wait()
                raise click.ClickException(f"the SSH tunnel closed (ssh exit {code})")
            except KeyboardInterrupt:
                click.echo("")
        finally:
            tunnel.close()
            signal.signal(signal.SIGTERM, previous)


def checked_info(said: dict[str, str]) -> tuple[str, str]:
    """The node's name and cookie from what the replica said, refused unless
    plain: the name is spliced into an Erlang expression run on this machine."""
    node, cookie = said.get("node", ""), said.get("cookie", "")
    if not node or not cookie:
        raise click.ClickException("the replica runs no Erlang node (not an Elixir "
                                   "release with distribution)")
    if not NODE_NAME.match(node) or not COOKIE.match(cookie) or cookie.startswith("-"):
        raise click.ClickException("the replica's node name or cookie is not a plain "
                                   "Erlang name (refused: it would run here)")
    if said.get("port") != str(DIST_PORT):
        raise click.ClickException(
            "the replica's node has no fixed distribution port (it started before "
            "ps:observer existed): `shipway ps:restart` first")
    return node, cookie


def _exit_on_term(_signum: int, _frame: Any) -> None:
    raise SystemExit(143)


def _observe(node: str, cookie: str, local: int, print_only: bool) -> bool:
    """Run observer here (True once it is closed), or print the commands
    (False: the caller keeps the tunnel open)."""
    where = module_dir()
    erl = shutil.which("erl")
    erlc = shutil.which("erlc")
    if erl and erlc and not print_only and has_wx(erl):
        subprocess.run([erlc, "-o", str(where), str(where / f"{MODULE}.erl")], check=True)
        click.echo(f"Observer on {node} (through 127.0.0.1:{local}); close it to end.",
                   err=True)
        subprocess.run(erl_argv(node, cookie, local, where, erl=erl))
        return True
    reason = "--print" if print_only else (
        "no Erlang here (erl, erlc)" if not (erl and erlc) else "Erlang here has no wx/observer")
    click.echo(f"Tunnel open: 127.0.0.1:{local} -> {node} (its distribution port).")
    click.echo(f"Observer not started ({reason}). With Erlang (and wx), run:")
    click.echo("  " + shlex.join(["erlc", "-o", str(where), str(where / f"{MODULE}.erl")]))
    click.echo("  " + shlex.join(erl_argv(node, cookie, local, where)))
    click.echo(f"or, for a shell on a hidden node of your own: "
               f"{shlex.join(erl_argv(node, cookie, local, where, start_observer=False))}")
    click.echo("  then: rpc:call('" + node + "', erlang, node, []).")
    click.echo("Press Ctrl-C to close the tunnel.")
    sys.stdout.flush()
    return False
