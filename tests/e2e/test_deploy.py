"""The deploy loop end to end: real git push over HTTP, real builds in
Docker, real run containers, real nginx, and the `shipway` CLI.

One app goes through the whole story in order (each step needs the state
the one before left): first deploy, redeploy, two broken releases rejected
while the good one serves, rollback, config change, scale, a killed replica,
and a killed server."""
from __future__ import annotations

import subprocess
import sys

import docker
import pytest
import requests

from tests.conftest import ROOT
from tests.e2e.helpers import Prober, User, fetch, new_app, stopped_then_started, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.docker]

GOOD = "Hello from a Procfile"


def _serving(user: User, app: str) -> list[dict]:
    data = user.shipway_json("-a", app, "ps")
    return [r for r in data["replicas"] if r["state"] == "running" and r["process_type"] == "web"]


def test_push_to_live_and_keep_serving(make_server, tmp_path) -> None:
    server = make_server(env={"SHIPWAY_STOP_GRACE": "3"})
    # A short health timeout so that the never-binding release fails fast.
    user, app = new_app(server, tmp_path / "home", "procfile", "e2e",
                        env={"HEALTHCHECK_TIMEOUT": "15"})

    # v1: the example as it is.
    push = user.push()
    assert "Released v1" in push.stderr and "is live at" in push.stderr
    r = fetch(server, app)
    assert r.status_code == 200 and r.text.startswith(GOOD) and "(release v1)" in r.text

    # v2: a one-line change.
    serve = user.src / "serve.py"
    serve.write_text(serve.read_text().replace(GOOD, "Hi from v2 code"))
    v2_commit = user.commit("v2")
    push = user.push()
    assert "Released v2" in push.stderr
    assert fetch(server, app).text.startswith("Hi from v2 code")

    # v3 crashes at boot: rejected with its log, the branch and v2 stay.
    procfile = user.src / "Procfile"
    procfile.write_text("web: python3 -c 'import sys; sys.exit(\"boom: no database\")'\n")
    user.commit("v3 crashes")
    with Prober(server, app) as probe:
        push = user.push(check=False)
    assert push.returncode != 0
    assert "boom: no database" in push.stderr
    assert user.remote_head() == v2_commit
    assert fetch(server, app).text.startswith("Hi from v2 code")
    assert probe.sent > 0 and probe.failures == []

    # v4 never binds $PORT: rejected after the health timeout, v2 serves on.
    procfile.write_text("web: echo 'listening nowhere'; sleep 3600\n")
    user.commit("v4 never binds")
    push = user.push(check=False)
    assert push.returncode != 0 and "listening nowhere" in push.stderr
    assert user.remote_head() == v2_commit
    assert fetch(server, app).text.startswith("Hi from v2 code")
    releases = {r["version"]: r["status"] for r in user.shipway_json("-a", app, "releases")}
    assert releases[3] == "failed" and releases[4] == "failed" and releases[2] == "succeeded"

    # Rollback to v1 serves v1's code as a new release, v5.
    user.shipway("-a", app, "releases:rollback", "1")
    r = fetch(server, app)
    assert r.text.startswith(GOOD) and "(release v5)" in r.text

    # A config change is a new release whose processes see the variable.
    with Prober(server, app) as probe:
        user.shipway("-a", app, "config:set", "GREETING=bonjour")
    r = fetch(server, app)
    assert "(release v6) bonjour" in r.text
    assert probe.failures == []

    # Scale to 3: three healthy replicas behind nginx, without a new release.
    with Prober(server, app) as probe:
        user.shipway("-a", app, "ps:scale", "--replicas", "3")
    replicas = _serving(user, app)
    assert len(replicas) == 3 and {r["version"] for r in replicas} == {6}
    assert probe.failures == []
    assert all(fetch(server, app).status_code == 200 for _ in range(9))

    # The app's containers: no capabilities, no Docker socket, not root.
    client = docker.from_env()
    container = client.containers.get(replicas[0]["container_id"])
    code, out = container.exec_run(["bash", "-c", "grep CapEff /proc/self/status; id -u; "
                                    "test -e /var/run/docker.sock || echo no-socket"])
    assert out.decode().split() == ["CapEff:", "0000000000000000", "1000", "no-socket"]
    assert container.attrs["HostConfig"]["CapDrop"] == ["ALL"]

    # kill -9 of a replica: it is replaced.
    container.kill(signal="SIGKILL")
    wait_for(lambda: len(_serving(user, app)) == 3
             and container.id[:12] not in {r["container_id"][:12] for r in _serving(user, app)},
             timeout=90)

    # kill -9 of the server: the app keeps serving through the crash and the
    # restart, and the restarted server still manages it.
    before = {r["container_id"] for r in _serving(user, app)}
    with Prober(server, app) as probe:
        stopped_then_started(server, server.kill9, lambda: probe.sent > 20)
        assert {r["container_id"] for r in _serving(user, app)} == before  # adopted
        user.shipway("-a", app, "ps:scale", "--replicas", "1")
    assert probe.failures == [], probe.failures[:5]
    wait_for(lambda: len(user.shipway_json("-a", app, "ps")["replicas"]) == 1, timeout=60)
    assert "(release v6) bonjour" in fetch(server, app).text
    client.close()


def test_destroy_stops_everything(make_server, tmp_path) -> None:
    server = make_server(env={"SHIPWAY_STOP_GRACE": "2"})
    user, app = new_app(server, tmp_path / "home", "procfile", "gone")
    user.push()
    assert fetch(server, app).status_code == 200
    user.shipway("-a", app, "apps:destroy", "--confirm", app)
    assert app not in user.shipway("--json", "apps").stdout
    assert fetch(server, app).status_code == 404
    client = docker.from_env()
    assert client.containers.list(all=True, filters={"label": f"shipway.app={app}"}) == []
    client.close()


def test_a_clean_restart_of_the_server_keeps_apps_serving(make_server, tmp_path) -> None:
    """Stopping or upgrading Shipway (SIGTERM) never takes an app offline:
    nginx and the replicas serve on and the next start adopts them; only
    `shipway server stop-router` stops nginx."""
    server = make_server(env={"SHIPWAY_STOP_GRACE": "2"})
    user, app = new_app(server, tmp_path / "home", "procfile", "calm")
    user.push()
    before = {r["container_id"] for r in _serving(user, app)}
    with Prober(server, app) as probe:
        stopped_then_started(server, server.stop, lambda: probe.sent > 20)
    assert probe.failures == [], probe.failures[:5]
    assert {r["container_id"] for r in _serving(user, app)} == before  # adopted

    def stop_router() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "server", "--data-dir", str(server.data_dir),
             "--http-port", str(server.http_port), "--router-port", str(server.router_port),
             "stop-router"],
            cwd=str(ROOT), env=server.env(), capture_output=True, text=True, timeout=60)

    refused = stop_router()  # the running server would only start it again
    assert refused.returncode != 0 and "stop it first" in refused.stderr
    assert fetch(server, app).status_code == 200
    server.stop()
    stopped = stop_router()
    assert stopped.returncode == 0 and "Stopped the router" in stopped.stdout, stopped.stderr
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{server.router_port}/", timeout=5)
