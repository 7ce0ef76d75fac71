"""`shipway logs`: the app's own output, its builds and deploys, `-n`,
`-f` following live, and the history of running replicas coming back after
the server is killed and restarted."""
from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading

import pytest

from tests.conftest import ROOT
from tests.e2e.helpers import User, fetch, new_app, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def _logs_with(user: User, app: str, needle: str) -> str:
    """The logs once `needle` is in them (replica output arrives a moment
    after the request it tells of)."""
    def ready() -> str | None:
        out = user.shipway("-a", app, "logs", "-n", "1500").stdout
        return out if needle in out else None

    return wait_for(ready, timeout=30)


def test_logs_history_follow_and_restart(make_server, tmp_path) -> None:
    server = make_server()
    user, app = new_app(server, tmp_path / "home", "procfile", "logs")
    user.push()
    assert fetch(server, app, "/first-request").status_code == 200

    out = _logs_with(user, app, "/first-request")
    assert re.search(r"^\S+Z app\[web\.[0-9a-f]{6}\]: .*\"GET /first-request HTTP", out, re.M), out
    assert re.search(r"^\S+Z shipway\[build\]: -----> Building ", out, re.M), out
    assert re.search(r"^\S+Z shipway\[deploy\]: .*Starting 1 replica", out, re.M), out
    assert "shipway[build]: -----> Released v1" in out
    two = user.shipway_json("-a", app, "logs", "-n", "2")["lines"]
    assert len(two) == 2 and two == out.strip().splitlines()[-2:]

    # -f: history first, then lines as they happen.
    follower = subprocess.Popen([sys.executable, "-m", "cli.main", "-a", app, "logs", "-f",
                                 "-n", "5"], cwd=str(ROOT), env=user.env,
                                stdout=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.rstrip("\n"))  # type: ignore[union-attr]
                                     for line in follower.stdout],
                     daemon=True).start()
    try:
        first = [lines.get(timeout=30) for _ in range(5)]
        assert first == out.strip().splitlines()[-5:]
        assert fetch(server, app, "/while-following").status_code == 200
        user.shipway("-a", app, "config:set", "GREETING=hi")  # a deploy, logged live too
        seen: list[str] = []
        wait_for(lambda: (seen.append(lines.get(timeout=1)) or True) and
                 any("/while-following" in s for s in seen) and
                 any("shipway[deploy]" in s and "v2" in s for s in seen), timeout=60,
                 interval=0)
    finally:
        follower.terminate()
        follower.wait(10)

    # A killed server comes back with the history of the replicas still
    # running (read back from Docker): the v2 replica served /before-kill.
    assert fetch(server, app, "/before-kill").status_code == 200
    _logs_with(user, app, "/before-kill")
    server.kill9()
    server.start()
    assert fetch(server, app, "/after-restart").status_code == 200
    out = _logs_with(user, app, "/after-restart")
    assert "GET /before-kill HTTP" in out
    assert out.count("GET /before-kill HTTP") == 1  # read back once, not twice
