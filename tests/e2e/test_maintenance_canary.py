"""Maintenance mode and canary end to end: a real `shipway server` with its
HAProxy router, two apps pushed with git, the `shipway` CLI."""
from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.helpers import User, fetch, new_app, stopped_then_started, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def _running(user: User, app: str) -> int:
    data = user.shipway_json("-a", app, "ps")
    return sum(1 for r in data["replicas"] if r["state"] == "running")


def _kill_haproxy(server) -> None:
    """SIGKILL the router's HAProxy master and its workers (which would
    otherwise serve on by themselves)."""
    path = server.data_dir / "router" / "haproxy" / "haproxy.pid"
    master = int(path.read_text().split()[0])
    workers = [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
    for pid in [master] + workers:
        os.kill(pid, signal.SIGKILL)


def test_maintenance_and_canary(make_server, tmp_path) -> None:
    server = make_server(env={"SHIPWAY_STOP_GRACE": "2"})
    user, app = new_app(server, tmp_path / "home", "procfile", "main",
                        env={"GREETING": "stable"})
    user.push()
    # The canary: the same user's second app, greeting differently.
    other = f"canary-{server.instance[-8:]}"
    user.shipway("create", other)
    user.shipway("-a", other, "config:set", "GREETING=canary")
    user.git("remote", "add", "canary", f"{server.url}/{other}.git")
    user.git("push", "canary", "main")
    assert "stable" in fetch(server, app).text and "canary" in fetch(server, other).text

    # Maintenance: 503 with Retry-After and a plain page; replicas keep running.
    out = user.shipway("-a", app, "maintenance:on").stdout
    assert "maintenance" in out
    r = fetch(server, app)
    assert r.status_code == 503 and r.headers["Retry-After"].isdigit()
    assert r.headers["Content-Type"].startswith("text/plain") and "maintenance" in r.text
    assert fetch(server, other).status_code == 200  # other apps untouched
    assert _running(user, app) == 1
    assert user.shipway_json("-a", app, "maintenance")["maintenance"] is True

    # A killed proxy comes back within 2 s, still in maintenance.
    _kill_haproxy(server)
    killed = time.monotonic()
    wait_for(lambda: fetch(server, app, timeout=2).status_code == 503, timeout=10, interval=0.1)
    assert time.monotonic() - killed < 3.0  # 2 s, plus the CLI-free polling's slack

    # ... and after a restart of the server with a proxy that died meanwhile
    # (started from its files, which hold routes only: the maintenance state
    # comes back from the database).
    def kill_proxy() -> None:
        server.stop()
        _kill_haproxy(server)

    stopped_then_started(server, kill_proxy, lambda: True)
    assert fetch(server, app).status_code == 503
    user.shipway("-a", app, "maintenance:off")
    r = fetch(server, app)  # at once: no deploy, no wait
    assert r.status_code == 200 and "stable" in r.text

    # Canary: 50 % of the app's requests go to the other app's replicas.
    bad = user.shipway("-a", app, "canary:set", "--canary", other, "--weight", "101", check=False)
    assert bad.returncode != 0
    user.shipway("-a", app, "canary:set", "--canary", other, "--weight", "50")
    seen = Counter("canary" if "canary" in fetch(server, app).text else "stable"
                   for _ in range(40))
    assert 12 <= seen["canary"] <= 28, seen
    assert {("canary" in fetch(server, other).text) for _ in range(5)} == {True}
    state = user.shipway_json("-a", app, "maintenance")
    assert state["canary"] == {"app": other, "weight": 50}
    # A stranger cannot send the app's traffic to their own app.
    stranger, theirs = new_app(server, tmp_path / "stranger", "procfile", "theirs")
    refused = stranger.shipway("-a", theirs, "canary:set", "--canary", app, "--weight", "10",
                               check=False)
    assert refused.returncode != 0 and "traceback" not in refused.stderr.lower()
    user.shipway("-a", app, "canary:unset")
    assert all("stable" in fetch(server, app).text for _ in range(10))
