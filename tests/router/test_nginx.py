"""The managed nginx, for real: routes to tiny HTTP servers on 127.0.0.1."""
from __future__ import annotations

import http.server
import os
import signal
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from router.interface import Route
from router.nginx import NginxRouter, RouterError, _alive, _children
from core.settings import Settings
from tests.conftest import free_port


class _Upstream:
    """A threaded HTTP server answering with its name; `/slow` takes a while."""

    def __init__(self, name: str) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/slow":
                    time.sleep(1.5)
                body = f"{outer.name} {self.headers.get('Host')}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.name = name
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", router_port=free_port(), base_domain="localhost")


@pytest.fixture
def router(settings: Settings) -> Iterator[NginxRouter]:
    r = NginxRouter(settings)
    r.start()
    yield r
    r.stop()


@pytest.fixture
def upstreams() -> Iterator[list[_Upstream]]:
    servers = [_Upstream("one"), _Upstream("two")]
    yield servers
    for s in servers:
        s.close()


def get(settings: Settings, host: str, path: str = "/", **kw) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{settings.router_port}{path}",
                        headers={"Host": host}, timeout=10, **kw)


def test_unknown_host_gets_404_page(settings: Settings, router: NginxRouter) -> None:
    r = get(settings, "nope.localhost")
    assert r.status_code == 404
    assert "no app" in r.text.lower()


def test_routes_app_and_custom_domain_round_robin(settings, router, upstreams) -> None:
    router.set_route(Route(app="web1", hostnames=["web1.localhost", "www.example.org"],
                           upstreams=[("127.0.0.1", u.port) for u in upstreams]))
    names = {get(settings, "web1.localhost").text.split()[0] for _ in range(8)}
    assert names == {"one", "two"}
    r = get(settings, "www.example.org")
    assert r.status_code == 200 and r.text.endswith("www.example.org")  # Host passed on
    assert get(settings, "other.localhost").status_code == 404


def test_the_longest_hostname_is_served(settings, router, upstreams) -> None:
    longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 57, "org"])  # 253 characters
    assert len(longest) == 253
    router.set_route(Route(app="long", hostnames=["long.localhost", longest],
                           upstreams=[("127.0.0.1", upstreams[0].port)]))
    assert get(settings, longest).text == f"one {longest}"
    with pytest.raises(ValueError):  # and a newline never reaches the config
        router.set_route(Route(app="long", hostnames=["long.localhost\n"], upstreams=[]))


def test_app_without_replicas_gets_503(settings, router) -> None:
    router.set_route(Route(app="idle", hostnames=["idle.localhost"], upstreams=[]))
    r = get(settings, "idle.localhost")
    assert r.status_code == 503 and "unavailable" in r.text


def test_dead_upstream_gets_503_not_502(settings, router) -> None:
    router.set_route(Route(app="dead", hostnames=["dead.localhost"],
                           upstreams=[("127.0.0.1", free_port())]))
    assert get(settings, "dead.localhost").status_code == 503


def test_remove_route(settings, router, upstreams) -> None:
    router.set_route(Route(app="gone", hostnames=["gone.localhost"],
                           upstreams=[("127.0.0.1", upstreams[0].port)]))
    assert get(settings, "gone.localhost").status_code == 200
    router.remove_route("gone")
    assert get(settings, "gone.localhost").status_code == 404


def test_set_route_is_in_force_when_it_returns(settings, router, upstreams) -> None:
    one, two = upstreams
    for i in range(5):
        target = one if i % 2 == 0 else two
        router.set_route(Route(app="flip", hostnames=["flip.localhost"],
                               upstreams=[("127.0.0.1", target.port)]))
        # Every fresh connection right after the call sees the new upstream.
        for _ in range(3):
            assert get(settings, "flip.localhost").text.split()[0] == target.name


def test_reload_lets_in_flight_requests_finish(settings, router, upstreams) -> None:
    one, two = upstreams
    router.set_route(Route(app="slow", hostnames=["slow.localhost"],
                           upstreams=[("127.0.0.1", one.port)]))
    result: dict[str, requests.Response] = {}
    t = threading.Thread(target=lambda: result.setdefault("r", get(settings, "slow.localhost", "/slow")))
    t.start()
    time.sleep(0.3)
    router.set_route(Route(app="slow", hostnames=["slow.localhost"],
                           upstreams=[("127.0.0.1", two.port)]))
    # The old worker still serves the slow request; it is drained after.
    assert router.wait_drained(0.1) is False
    assert "r" not in result
    assert router.wait_drained(10) is True
    t.join(10)
    assert result["r"].status_code == 200 and result["r"].text.startswith("one")
    assert get(settings, "slow.localhost").text.startswith("two")


def test_invalid_hostname_is_refused_and_config_unchanged(settings, router, upstreams) -> None:
    router.set_route(Route(app="safe", hostnames=["safe.localhost"],
                           upstreams=[("127.0.0.1", upstreams[0].port)]))
    with pytest.raises(ValueError):
        router.set_route(Route(app="safe", hostnames=["x.localhost; return 200 hacked"],
                               upstreams=[]))
    assert get(settings, "safe.localhost").status_code == 200
    assert router.routes()["safe"].hostnames == ["safe.localhost"]


def test_rejected_config_keeps_running_one(settings, router, upstreams, monkeypatch) -> None:
    router.set_route(Route(app="keep", hostnames=["keep.localhost"],
                           upstreams=[("127.0.0.1", upstreams[0].port)]))
    # Injected fault: a render nginx -t refuses.
    import router.nginx as mod

    monkeypatch.setattr(mod, "render", lambda *a, **k: "this is not nginx config;")
    with pytest.raises(RouterError):
        router.set_route(Route(app="keep", hostnames=["keep.localhost"], upstreams=[]))
    monkeypatch.undo()
    assert get(settings, "keep.localhost").status_code == 200
    assert router.routes()["keep"].upstreams


def test_nginx_survives_its_owner_and_is_adopted(settings, router, upstreams) -> None:
    router.set_route(Route(app="kept", hostnames=["kept.localhost"],
                           upstreams=[("127.0.0.1", upstreams[0].port)]))
    pid = router.pid()
    # A new control plane (the server restarted) adopts the same master and
    # its routes without an interruption.
    again = NginxRouter(settings)
    again.start()
    assert again.pid() == pid
    assert get(settings, "kept.localhost").status_code == 200
    again.set_route(Route(app="kept", hostnames=["kept.localhost"],
                          upstreams=[("127.0.0.1", upstreams[1].port)]))
    assert get(settings, "kept.localhost").text.startswith("two")


def test_stale_pid_file_starts_a_new_nginx(settings, upstreams) -> None:
    r = NginxRouter(settings)
    r.start()
    pid = r.pid()
    workers = _children(pid)
    os.kill(pid, signal.SIGKILL)  # nginx itself died (its workers too, here)
    for w in workers:
        os.kill(w, signal.SIGKILL)
    deadline = time.time() + 10
    while time.time() < deadline and r.pid() is not None:
        time.sleep(0.05)
    time.sleep(0.3)
    again = NginxRouter(settings)
    again.start()
    try:
        assert again.pid() not in (None, pid)
        assert get(settings, "x.localhost").status_code == 404
    finally:
        again.stop()


def _wait_gone(router: NginxRouter) -> None:
    deadline = time.time() + 10
    while time.time() < deadline and router.pid() is not None:
        time.sleep(0.05)
    assert router.pid() is None


def test_a_dead_nginx_is_started_again_with_its_routes(settings, router, upstreams) -> None:
    router.set_route(Route(app="back", hostnames=["back.localhost"],
                           upstreams=[("127.0.0.1", upstreams[0].port)]))
    pid = router.pid()
    os.kill(pid, signal.SIGTERM)  # nginx's fast shutdown: master and workers go
    _wait_gone(router)
    with pytest.raises(requests.ConnectionError):
        get(settings, "back.localhost")
    router.ensure_running()  # what each supervision pass does
    assert router.pid() not in (None, pid)
    assert get(settings, "back.localhost").text.startswith("one")
    router.stop()
    router.ensure_running()  # a clean stop is not undone
    assert router.pid() is None


def test_workers_of_a_killed_master_are_replaced(settings, router, upstreams) -> None:
    router.set_route(Route(app="orph", hostnames=["orph.localhost"],
                           upstreams=[("127.0.0.1", upstreams[0].port)]))
    pid = router.pid()
    workers = _children(pid)
    os.kill(pid, signal.SIGKILL)  # the master alone: its workers serve on
    _wait_gone(router)
    assert get(settings, "orph.localhost").text.startswith("one")
    # A new nginx could not bind while they hold the port: they are stopped.
    router.set_route(Route(app="orph", hostnames=["orph.localhost"],
                           upstreams=[("127.0.0.1", upstreams[1].port)]))
    assert not any(_alive(w) for w in workers)
    assert router.pid() not in (None, pid)
    assert get(settings, "orph.localhost").text.startswith("two")


def _hang_through_a_change(router: NginxRouter, route: Route, monkeypatch) -> int:
    """Set `route` while nginx hangs (injected: SIGSTOP), which fails, then
    wake nginx and wait until it serves the change it was sent: the router
    is left dirty. The generation it serves then."""
    import router.nginx as mod

    monkeypatch.setattr(mod, "APPLY_TIMEOUT", 1.0)
    pid = router.pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(RouterError):
            router.set_route(route)
    finally:
        os.kill(pid, signal.SIGCONT)
    monkeypatch.undo()
    deadline = time.time() + 10
    seen = None
    while time.time() < deadline and seen != router._generation:
        seen = router.generation()  # a draining old worker may answer first
        time.sleep(0.05)
    assert seen == router._generation
    return seen


def test_a_change_nginx_did_not_confirm_is_applied_again(settings, router, upstreams,
                                                         monkeypatch) -> None:
    route = Route(app="hung", hostnames=["hung.localhost"],
                  upstreams=[("127.0.0.1", upstreams[1].port)])
    router.set_route(Route(app="hung", hostnames=["hung.localhost"],
                           upstreams=[("127.0.0.1", upstreams[0].port)]))
    generation = _hang_through_a_change(router, route, monkeypatch)
    router.set_route(route)  # the same route: not skipped, confirmed this time
    assert router._generation > generation and router.generation() == router._generation
    assert get(settings, "hung.localhost").text.startswith("two")


def test_removing_a_route_that_is_not_there_while_dirty(settings, router, upstreams,
                                                        monkeypatch) -> None:
    route = Route(app="hung", hostnames=["hung.localhost"],
                  upstreams=[("127.0.0.1", upstreams[0].port)])
    _hang_through_a_change(router, route, monkeypatch)
    router.remove_route("never-routed")  # applied (dirty), and nothing to fail on
    assert get(settings, "hung.localhost").text.startswith("one")
