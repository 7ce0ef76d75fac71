"""The router never drops a request across a deploy: a real `shipway
server` with its HAProxy router, an app pushed with git whose `/slow`
answers after some seconds, and clients that never retry."""
from __future__ import annotations

import http.client
import threading
import time

import pytest

from tests.e2e.helpers import fetch, new_app, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.docker]

SLOW_APP = '''"""Answers / at once and /slow after SLOW seconds; dies on SIGTERM at once
(Python's default), so a replica stopped under a request fails it."""
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(float(os.environ.get("SLOW", "12")))
        body = ("release %s\\n" % os.environ.get("APP_VERSION")).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
'''


def test_slow_request_in_flight_during_a_redeploy_completes(make_server, tmp_path) -> None:
    server = make_server(env={"SHIPWAY_STOP_GRACE": "30"})
    user, app = new_app(server, tmp_path / "home", "procfile", "slow")
    (user.src / "serve.py").write_text(SLOW_APP)
    user.commit("slow endpoint")
    user.push()
    assert fetch(server, app).text.startswith("release v1")

    # A kept-alive client that never retries: one request before the deploy,
    # the next after it, on the same connection.
    kept = http.client.HTTPConnection("127.0.0.1", server.router_port, timeout=60)
    kept.request("GET", "/", headers={"Host": f"{app}.localhost"})
    assert kept.getresponse().read().startswith(b"release v1")

    slow: dict = {}

    def call_slow() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.router_port, timeout=90)
        try:
            conn.request("GET", "/slow", headers={"Host": f"{app}.localhost"})
            resp = conn.getresponse()
            slow["answer"] = (resp.status, resp.read().decode())
        except Exception as exc:  # noqa: BLE001 (the test reports it)
            slow["answer"] = repr(exc)
        finally:
            slow["done"] = time.monotonic()
            conn.close()

    t = threading.Thread(target=call_slow)
    started = time.monotonic()
    t.start()
    time.sleep(0.5)  # the request has reached replica v2's predecessor
    # A config change is a redeploy: v2's replica replaces v1's, which leaves
    # with the slow request in flight.
    user.shipway("-a", app, "config:set", "GREETING=again")
    wait_for(lambda: fetch(server, app).text.startswith("release v2"), timeout=60)
    t.join(90)
    assert slow.get("answer") == (200, "release v1\n"), slow
    assert slow["done"] - started >= 11  # it really was in flight for its 12 s

    kept.request("GET", "/", headers={"Host": f"{app}.localhost"})
    assert kept.getresponse().read().startswith(b"release v2")  # same connection, no retry
    kept.close()
