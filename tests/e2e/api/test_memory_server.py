"""A real `shipway server` with `runner: memory` and `builder: memory`:
the API, git over HTTP, the pipeline, the controller and the deployer are
the real ones; builds and replicas are in memory, so no Docker is needed."""
from __future__ import annotations

import docker
import pytest

from tests.e2e.helpers import new_app


@pytest.fixture
def memory_server(make_server):
    return make_server(env={"SHIPWAY_RUNNER": "memory", "SHIPWAY_BUILDER": "memory"})


def test_a_push_is_released_and_runs_without_docker(memory_server, tmp_path) -> None:
    user, app = new_app(memory_server, tmp_path / "home", "procfile", "mem")
    push = user.push()
    assert "Released v1" in push.stderr and "in-memory builder" in push.stderr
    releases = user.shipway_json("-a", app, "releases")
    assert [(r["version"], r["status"]) for r in releases] == [(1, "succeeded")]
    replicas = user.shipway_json("-a", app, "ps")["replicas"]
    assert [(r["process_type"], r["version"], r["state"]) for r in replicas] == \
        [("web", 1, "running")]
    user.shipway("-a", app, "ps:scale", "--replicas", "3")
    assert len(user.shipway_json("-a", app, "ps")["replicas"]) == 3
    user.shipway("-a", app, "config:set", "GREETING=hi")
    assert [r["version"] for r in user.shipway_json("-a", app, "ps")["replicas"]] == [2, 2, 2]
    # Nothing of it went to Docker.
    made = docker.from_env().containers.list(
        all=True, filters={"label": f"shipway.instance={memory_server.instance}"})
    assert made == []
