"""Example apps other than the Procfile one, pushed for real and served by
locked-down run containers through nginx."""
from __future__ import annotations

import docker
import pytest

from tests.e2e.helpers import fetch, new_app

pytestmark = [pytest.mark.slow, pytest.mark.docker]


@pytest.mark.parametrize("example, greeting", [("elixir", "Hello from Elixir"),
                                               ("nodejs", "Hello from Node.js")])
def test_example_is_served(make_server, tmp_path, example: str, greeting: str) -> None:
    server = make_server(env={"SHIPWAY_STOP_GRACE": "2"})
    user, app = new_app(server, tmp_path / "home", example, example[:4], env={"GREETING": "salut"})
    push = user.push()
    assert "is live at" in push.stderr
    r = fetch(server, app)
    assert r.status_code == 200
    assert r.text.startswith(greeting) and "(release v1) salut" in r.text
    [replica] = [r for r in user.shipway_json("-a", app, "ps")["replicas"]
                 if r["process_type"] == "web"]
    container = docker.from_env().containers.get(replica["container_id"])
    logs = container.logs().decode(errors="replace")
    names = container.exec_run(["bash", "-c", "epmd -names"], user="1000:1000")
    if example == "elixir":
        # the entrypoint started epmd, and the release's node is registered in it
        assert "shipway: epmd started for the release's node" in logs
        assert names.exit_code == 0 and f"name {app} at port" in names.output.decode()
        # the buildpack boots the release in interactive mode, unless the
        # app's config says otherwise
        assert _code_mode(container) == "interactive"
        # the connection nginx keeps to the app sends without waiting for
        # ACKs (Nagle would hold each response's body for 40 ms)
        assert fetch(server, app).status_code == 200
        assert _rpc(container, _HTTP_NODELAY) == "true"
        user.shipway("-a", app, "config:set", "RELEASE_MODE=embedded")
        [replica] = [r for r in user.shipway_json("-a", app, "ps")["replicas"]
                     if r["process_type"] == "web" and r["version"] == 2]
        container = docker.from_env().containers.get(replica["container_id"])
        assert _code_mode(container) == "embedded"
    else:  # not an Erlang release: no epmd
        assert "epmd" not in logs and names.exit_code != 0


# TCP_NODELAY of the node's connected sockets on the app's HTTP port ("true"
# only if there is one and all have it).
_HTTP_NODELAY = (
    'port = String.to_integer(System.get_env("PORT")); '
    "found = for p <- Port.list(), :erlang.port_info(p, :name) == {:name, ~c\"tcp_inet\"}, "
    "match?({:ok, {_, ^port}}, :inet.sockname(p)), match?({:ok, _}, :inet.peername(p)), "
    "do: :inet.getopts(p, [:nodelay]); "
    "IO.puts(found != [] and Enum.all?(found, &(&1 == {:ok, [nodelay: true]})))")


def _code_mode(container) -> str:
    """The running node's code loading mode."""
    return _rpc(container, "IO.puts(:code.get_mode())")


def _rpc(container, expression: str) -> str:
    """What `expression` printed, run in the running node over its release's rpc."""
    script = ("set -a; . /shipway/env; set +a; cd /app; "
              "_build/prod/rel/hello/bin/hello rpc \"$1\"")
    result = container.exec_run(["bash", "-c", script, "rpc", expression], user="1000:1000")
    assert result.exit_code == 0, result.output
    return result.output.decode().strip()
