"""Two `shipway server`s with default settings (no SHIPWAY_INSTANCE) and
their own data dirs on one Docker engine: each takes its data dir's own
instance, so neither's supervision (adoption at start, the orphan sweep)
removes the other's containers, and the names of what they make never
collide. Before, both were instance `default`: each removed the other's
apps' containers as orphans ("app … is gone")."""
from __future__ import annotations

import time

import docker
import pytest

from builder.networks import bridge_prefix, chain_name
from core.instance import INSTANCE_FILE, valid_instance
from core.settings import Settings
from runner.supervision import ORPHAN_INTERVAL
from tests.e2e.helpers import Prober, fetch, new_app, stopped_then_started

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def _containers(instance: str) -> list:
    return docker.from_env().containers.list(
        all=True, filters={"label": f"shipway.instance={instance}"})


def _networks(instance: str) -> set[str]:
    return {n.name for n in docker.from_env().networks.list(
        filters={"label": f"shipway.instance={instance}"})}


def test_two_default_servers_keep_each_others_apps(make_server, tmp_path, stack_image) -> None:
    a = make_server(instance_from_data_dir=True, env={"SHIPWAY_STOP_GRACE": "3"})
    b = make_server(instance_from_data_dir=True, env={"SHIPWAY_STOP_GRACE": "3"})
    assert "SHIPWAY_INSTANCE" not in a.env() and "SHIPWAY_INSTANCE" not in b.env()
    for server in (a, b):
        kept = (server.data_dir / INSTANCE_FILE).read_text().strip()
        assert kept == server.instance and valid_instance(kept) and kept != "default"
    assert a.instance != b.instance

    user_a, app_a = new_app(a, tmp_path / "home-a", "procfile", "two")
    user_b, app_b = new_app(b, tmp_path / "home-b", "procfile", "two")
    assert "Released v1" in user_a.push().stderr
    assert "Released v1" in user_b.push().stderr
    assert fetch(a, app_a).status_code == 200 and fetch(b, app_b).status_code == 200

    # Supervision passes, orphan sweeps included, of both servers.
    with Prober(a, app_a) as probe_a, Prober(b, app_b) as probe_b:
        time.sleep(ORPHAN_INTERVAL + 5)
        # A restart of one: its adoption removes what it does not own.
        stopped_then_started(a, a.stop, lambda: a.proc.poll() is not None)
        time.sleep(ORPHAN_INTERVAL + 5)
    assert probe_a.sent > 0 and probe_b.sent > 0
    assert probe_b.failures == []
    # A's router is its own process, left running across A's restart.
    assert probe_a.failures == []
    for server, app in ((a, app_a), (b, app_b)):
        r = fetch(server, app)
        assert r.status_code == 200 and "(release v1)" in r.text
        running = [c for c in _containers(server.instance)
                   if c.labels.get("shipway.role") == "run" and c.status == "running"]
        assert [c.labels.get("shipway.app") for c in running] == [app]
    assert "is gone" not in a.log() and "is gone" not in b.log()

    # Nothing either made is named like the other's.
    names_a = {c.name for c in _containers(a.instance)} | _networks(a.instance)
    names_b = {c.name for c in _containers(b.instance)} | _networks(b.instance)
    assert names_a and names_b and not names_a & names_b
    sa, sb = Settings(instance=a.instance), Settings(instance=b.instance)
    assert chain_name(sa) != chain_name(sb) and bridge_prefix(sa) != bridge_prefix(sb)
