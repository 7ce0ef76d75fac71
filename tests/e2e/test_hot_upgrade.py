"""A hot push (`Shipway-Hot: true`) upgrades the running Elixir release in
place: the same container and BEAM node answer with the new code, with no
failed request, and a restarted server adopts the upgraded replica. A change
beyond module code falls back to a restart deploy."""
from __future__ import annotations

import docker
import pytest

from tests.e2e.helpers import Prober, fetch, new_app, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def test_hot_push_upgrades_the_running_release_in_place(make_server, tmp_path) -> None:
    server = make_server()
    user, app = new_app(server, tmp_path / "home", "elixir", "hot")
    user.push()
    assert fetch(server, app).text.startswith("Hello from Elixir v1 (release v1)")
    [before] = user.shipway_json("-a", app, "ps")["replicas"]
    client = docker.from_env()
    started = client.containers.get(before["container_id"]).attrs["State"]["StartedAt"]

    source = user.src / "lib" / "hello.ex"
    source.write_text(source.read_text().replace('@marker "v1"', '@marker "v2-hot"'))
    user.commit("a one-line change, hot")
    with Prober(server, app) as probe:
        push = user.git("-c", "http.extraheader=Shipway-Hot: true", "push", "shipway", "main")
    assert "Hot upgrading 1 replica(s) to v2" in push.stderr, push.stderr
    assert "changed module(s): Hello" in push.stderr
    # No version bump: the replica fetched the slug; no artefact was sent.
    assert "no version bump (0.1.0): module reload" in push.stderr, push.stderr
    assert "(upgrade artefact" not in push.stderr, push.stderr
    assert "hot-upgraded to v2 (1 replica(s), none restarted)" in push.stderr
    # The node that served v1 serves the new code (its environment is still v1's).
    assert fetch(server, app).text.startswith("Hello from Elixir v2-hot (release v1)")
    [after] = user.shipway_json("-a", app, "ps")["replicas"]
    assert after["container_id"] == before["container_id"] and after["version"] == 2
    assert client.containers.get(before["container_id"]).attrs["State"]["StartedAt"] == started
    assert probe.sent > 0 and probe.failures == []
    assert [r["status"] for r in user.shipway_json("-a", app, "releases")][:1] == ["succeeded"]

    # A restarted server adopts the upgraded replica instead of replacing it.
    server.kill9()
    offset = server.log_path.stat().st_size
    server.start()
    wait_for(lambda: "shipway: ready" in server.log_path.read_text(errors="replace")[offset:],
             timeout=60)
    [adopted] = user.shipway_json("-a", app, "ps")["replicas"]
    assert adopted["container_id"] == before["container_id"] and adopted["version"] == 2

    # A new version without one of its applications cannot be hot-loaded
    # (issue 17: a plain version bump is an OTP release upgrade, see
    # test_hot_upgrade_otp.py): restart instead, saying why.
    mix = user.src / "mix.exs"
    mix.write_text(mix.read_text().replace('version: "0.1.0"', 'version: "0.2.0"')
                   .replace(", :runtime_tools]", "]"))
    user.commit("a new app version")
    push = user.git("push", "-o", "hot", "shipway", "main")
    assert "Hot upgrade not possible (not hot-upgradable: application runtime_tools removed" \
        in push.stderr, push.stderr
    assert fetch(server, app).text.startswith("Hello from Elixir v2-hot (release v3)")
    [restarted] = [r for r in user.shipway_json("-a", app, "ps")["replicas"]
                   if r["state"] == "running"]
    assert restarted["container_id"] != before["container_id"] and restarted["version"] == 3
