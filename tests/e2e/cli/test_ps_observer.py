"""`shipway ps:observer` (issue 17 item 5): an SSH tunnel through the git
gateway to one replica's fixed distribution port, and a local hidden node
with the app's cookie that reaches the app's node through that tunnel
only. This host has no Erlang, so the CLI prints the commands; they run
as printed in a stack-image container on the host's network, which dials
127.0.0.1 only (the CLI's epmd module sends every node there)."""
from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest

from tests.conftest import ROOT
from tests.e2e.helpers import User, new_app, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.docker]

PROBE = ("N = list_to_atom(os:getenv(\"APP_NODE\")), "
         "io:format(\"node=~p hidden=~p~n\", [rpc:call(N, erlang, node, []), "
         "rpc:call(N, erlang, nodes, [hidden])]), halt().")


def _with_key(user: User) -> str:
    key = user.home / ".ssh" / "id_ed25519"
    key.parent.mkdir(mode=0o700, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    user.shipway("account:ssh_keys:add", f"@{key}.pub")
    return str(key)


def read_until(proc: subprocess.Popen, marker: str, timeout: float = 90) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    raise AssertionError(f"no {marker!r} from ps:observer: {lines}")


def run_local_node(server, stack_image: str, where: Path, shell: list[str],
                   node: str) -> str:
    """The printed commands, in a container on the host's network (its
    127.0.0.1 is the host's, where the tunnel listens)."""
    script = (f"erlc -o {shlex.quote(str(where))} {shlex.quote(str(where / 'shipway_observer_epmd.erl'))}"
              f" && timeout 60 {shlex.join(shell)} -noshell -eval {shlex.quote(PROBE)}")
    container = docker.from_env().containers.run(
        stack_image, ["bash", "-c", script], network_mode="host", detach=True,
        environment={"APP_NODE": node}, labels={"shipway.instance": server.instance},
        volumes={str(where): {"bind": str(where), "mode": "rw"}})
    try:
        container.wait(timeout=120)
        return container.logs().decode("utf-8", "replace")
    finally:
        container.remove(force=True, v=True)


def test_ps_observer_reaches_the_node_through_the_tunnel_only(make_server, tmp_path,
                                                              stack_image) -> None:
    server = make_server()
    user, app = new_app(server, tmp_path / "home", "elixir-counter", "obs")
    key = _with_key(user)
    user.push()
    [replica] = user.shipway_json("-a", app, "ps")["replicas"]
    attrs = docker.from_env().containers.get(replica["container_id"]).attrs
    published = attrs["NetworkSettings"]["Ports"] or {}
    # The node's distribution port is on the host's loopback only (where
    # Shipway's hot upgrades call it, as the web and SSH ports are), never
    # on an outside interface: from the user's machine, only the tunnel.
    bound = published.get("9100/tcp") or []
    assert all(b["HostIp"] == "127.0.0.1" for b in bound), published

    observer = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "-a", app, "ps:observer", "-i", key], env=user.env,
        cwd=str(ROOT),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = read_until(observer, "Press Ctrl-C")
        [opened] = [line for line in lines if line.startswith("Tunnel open: 127.0.0.1:")]
        node = opened.split(" -> ", 1)[1].split(" ", 1)[0]
        assert node.startswith(f"{app}@") and not node.endswith("@127.0.0.1"), node
        assert "Observer not started (no Erlang here" in "\n".join(lines), lines
        [shell_line] = [line for line in lines if line.startswith("or, for a shell")]
        shell = shlex.split(shell_line.split(": ", 1)[1])
        assert shell[0] == "erl" and "-hidden" in shell and "-dist_listen" in shell, shell
        where = Path(shell[shell.index("-pa") + 1])

        said = run_local_node(server, stack_image, where, shell, node)
        assert f"node='{node}'" in said, said
        assert "hidden=['observer-" in said, said  # the app's node sees our hidden node
    finally:
        observer.send_signal(signal.SIGINT)
        observer.wait(30)
    # The tunnel is gone with the CLI: the same commands no longer reach
    # the node (nothing but the tunnel carried them).
    wait_for(lambda: subprocess.run(["ss", "-Hltn", f"sport = :{opened.split(':')[2].split(' ')[0]}"],
                                    capture_output=True, text=True).stdout.strip() == "",
             timeout=20)
    said = run_local_node(server, stack_image, where, shell, node)
    assert "node={badrpc,nodedown}" in said, said
