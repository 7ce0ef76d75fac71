"""A release a crash left `deploying` is settled at the next start, and the
app serves throughout. The server is killed (SIGKILL) mid-deploy, twice:
- while v2's replicas still boot (its Procfile sleeps first): v2 is settled
  failed, v1 is what serves and what `apps:info` calls current;
- once v2's replicas are routed but before v2 is recorded as succeeded
  (the fault: a test holds the SQLite write lock, so that write waits): v2
  is settled succeeded, its replicas are adopted and keep serving.
Before, every such release was marked failed and the previous one adopted,
although its replicas had been retired."""
from __future__ import annotations

import sqlite3
import subprocess
import time

import docker
import pytest

from tests.e2e.helpers import Prober, fetch, new_app, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def _v2_replicas(instance: str, app: str) -> list:
    return docker.from_env().containers.list(filters={"label": [
        f"shipway.instance={instance}", f"shipway.app={app}", "shipway.release=2"]})


def _push_v2(user, sleep: int, greeting: str) -> subprocess.Popen:
    serve = user.src / "serve.py"
    serve.write_text(serve.read_text().replace("Hello from a Procfile", greeting))
    (user.src / "Procfile").write_text(f"web: sleep {sleep}; exec python3 serve.py\n")
    user.commit("v2 boots slowly")
    return subprocess.Popen(["git", "push", "shipway", "main"], cwd=str(user.src), env=user.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _restart(server) -> None:
    offset = server.log_path.stat().st_size
    server.start()
    wait_for(lambda: "shipway: ready" in server.log_path.read_text(errors="replace")[offset:],
             timeout=90)


def _statuses(user, app: str) -> dict[int, str]:
    return {r["version"]: r["status"] for r in user.shipway_json("-a", app, "releases")}


def test_killed_while_the_new_release_boots_it_fails_and_the_old_serves(
        make_server, tmp_path, stack_image) -> None:
    server = make_server(env={"SHIPWAY_STOP_GRACE": "3"})
    user, app = new_app(server, tmp_path / "home", "procfile", "settle")
    assert "Released v1" in user.push().stderr
    with Prober(server, app) as probe:
        push = _push_v2(user, sleep=40, greeting="Hello from v2")
        wait_for(lambda: _v2_replicas(server.instance, app), timeout=120)
        server.kill9()
        push.wait(30)
        _restart(server)
        assert _statuses(user, app) == {1: "succeeded", 2: "failed"}
        assert user.shipway_json("-a", app, "apps:info")["release"]["version"] == 1
        wait_for(lambda: not _v2_replicas(server.instance, app), timeout=60)
        time.sleep(3)  # a supervision pass
    assert probe.sent > 0 and probe.failures == []
    r = fetch(server, app)
    assert r.status_code == 200 and "(release v1)" in r.text


def test_killed_after_the_new_release_was_routed_it_succeeds_and_serves_on(
        make_server, tmp_path, stack_image) -> None:
    server = make_server(env={"SHIPWAY_STOP_GRACE": "3"})
    user, app = new_app(server, tmp_path / "home", "procfile", "settle")
    assert "Released v1" in user.push().stderr
    with Prober(server, app) as probe:
        push = _push_v2(user, sleep=5, greeting="Hello from v2")
        wait_for(lambda: _v2_replicas(server.instance, app), timeout=120)
        # v2 is `deploying` (recorded before its replicas start); from now
        # on the server cannot record it succeeded.
        db = sqlite3.connect(server.data_dir / "shipway.db", isolation_level=None, timeout=30)
        db.execute("BEGIN IMMEDIATE")
        try:
            wait_for(lambda: "(release v2)" in fetch(server, app).text, timeout=90,
                     interval=0.1)
            server.kill9()
        finally:
            db.execute("ROLLBACK")
            db.close()
        push.wait(30)
        _restart(server)
        assert _statuses(user, app) == {1: "succeeded", 2: "succeeded"}
        assert user.shipway_json("-a", app, "apps:info")["release"]["version"] == 2
        time.sleep(5)  # supervision passes: v2's replicas stay
    assert probe.sent > 0 and probe.failures == []
    r = fetch(server, app)
    assert r.status_code == 200 and r.text.startswith("Hello from v2") and "(release v2)" in r.text
    assert _v2_replicas(server.instance, app)
