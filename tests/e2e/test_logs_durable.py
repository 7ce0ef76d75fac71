"""Durable logs with a real deployed app: a 1 MB line is cut and marked,
invalid UTF-8 is replaced, the router logs each request, `--source` picks
one source, and the whole
history (builds included, which Docker never had) survives a restart of
the platform, each replica line once."""
from __future__ import annotations

import re

import pytest

from tests.e2e.helpers import User, fetch, new_app, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.docker]

NOISY = r'''
import os, sys
out = sys.stdout.buffer
out.write(b"x" * 1_000_000 + b"\n")
out.write(b"bad \xff\xfe utf8\n")
out.write(b"marker-one\n")
out.flush()
os.execvp("python3", ["python3", "serve.py"])
'''


def _logs_with(user: User, app: str, needle: str, *extra: str) -> str:
    def ready() -> str | None:
        out = user.shipway("-a", app, "logs", "-n", "1500", *extra).stdout
        return out if needle in out else None

    return wait_for(ready, timeout=60)


def test_history_survives_a_restart_with_bad_lines_cut_and_replaced(make_server,
                                                                    tmp_path) -> None:
    server = make_server()
    user, app = new_app(server, tmp_path / "home", "procfile", "durable")
    (user.src / "noisy.py").write_text(NOISY)
    (user.src / "Procfile").write_text("web: python3 noisy.py\n")
    user.commit("noisy")
    user.push()

    out = _logs_with(user, app, "marker-one")
    long = next(line for line in out.splitlines() if "xxxxxxxxxx" in line)
    assert long.endswith(" chars]") and "[truncated " in long and len(long) < 11_000
    assert "bad \ufffd\ufffd utf8" in out
    assert "shipway[build]: -----> Released v1" in out

    # The router's access line for each request, as Heroku's.
    assert fetch(server, app, "/routed?x=1").status_code == 200
    assert fetch(server, app, "/missing-nothing").status_code == 200
    routed = _logs_with(user, app, "/missing-nothing", "--source", "router")
    assert re.search(r'shipway\[router\]: at=info method=GET path="/routed\?x=1" status=200 '
                     r'bytes=\d+ connect=\d+ms service=\d+ms fwd="', routed), routed
    assert "app[web." not in routed

    builds = user.shipway("-a", app, "logs", "-n", "1500", "--source", "build").stdout
    assert "shipway[build]:" in builds and "app[web." not in builds
    web = user.shipway("-a", app, "logs", "-n", "1500", "--source", "web").stdout
    assert "marker-one" in web and "shipway[" not in web

    server.stop()
    server.start()
    assert fetch(server, app, "/after-restart").status_code == 200
    after = _logs_with(user, app, "GET /after-restart")  # the collector is reading again
    assert "shipway[build]: -----> Released v1" in after  # only our store had it
    assert after.count("marker-one") == 1  # the collector goes on, not from the start
