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
    else:  # not an Erlang release: no epmd
        assert "epmd" not in logs and names.exit_code != 0
