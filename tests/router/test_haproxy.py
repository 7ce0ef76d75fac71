"""The HAProxy router, for real: a haproxy process routing to tiny HTTP
servers on 127.0.0.1, changed only through its runtime API."""
from __future__ import annotations

import http.client
import http.server
import os
import signal
import ssl
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from router.haproxy import HAProxyRouter
from router.haproxy_process import _alive
from router.haproxy_runtime import Runtime
from router.interface import Route
from core.settings import Settings
from tests.conftest import free_port

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/sbin/haproxy"), reason="haproxy not installed")


class _Upstream:
    """A threaded HTTP/1.1 server answering with its name; `/slow` sleeps 2 s;
    `/headers` adds the forwarding headers it got."""

    def __init__(self, name: str) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/slow":
                    time.sleep(2)
                body = outer.name.encode()
                if self.path == "/headers":
                    xff = ", ".join(self.headers.get_all("X-Forwarded-For") or [])
                    body += (f" xff={xff}"
                             f" proto={self.headers.get('X-Forwarded-Proto')}").encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # the proxy closing an idle connection is not news

        self.name = name
        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.addr = ("127.0.0.1", self.port)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", router_port=free_port(), base_domain="localhost",
                    https_port=free_port())


@pytest.fixture
def router(settings: Settings) -> Iterator[HAProxyRouter]:
    r = HAProxyRouter(settings, threads=1)
    r.start()
    yield r
    r.stop()
    assert r.pid() is None


@pytest.fixture
def ups() -> Iterator[list[_Upstream]]:
    servers = [_Upstream(f"u{i}") for i in range(4)]
    yield servers
    for s in servers:
        s.close()


def _worker(router: HAProxyRouter) -> str:
    """The pid of the worker answering the admin socket now."""
    return router.runtime.raw("show info").split("Pid: ")[1].split()[0]


def _kept_alive(settings: Settings, count: int) -> list[http.client.HTTPConnection]:
    """Client connections that made one request to web.localhost and are now idle."""
    conns = [http.client.HTTPConnection("127.0.0.1", settings.router_port, timeout=10)
             for _ in range(count)]
    for conn in conns:
        conn.request("GET", "/", headers={"Host": "web.localhost"})
        assert conn.getresponse().read() == b"u0"
    return conns


def _settings_reload(settings: Settings) -> None:
    """A change of the router's own settings (threads): a reload, not a route change."""
    changed = HAProxyRouter(settings, threads=2)
    try:
        changed.start()  # 00-main.cfg differs: a reload
        time.sleep(0.3)
    finally:
        changed.detach()  # its watcher would start the proxy again after the fixture stops it


def get(settings: Settings, host: str, path: str = "/") -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", settings.router_port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def active(router: HAProxyRouter, backend: str) -> set[int]:
    """Ports of servers in rotation (admin state neither maintenance nor drain)."""
    return {port for _, (_, port, op, adm) in router.runtime.servers(backend).items()
            if op == 2 and not adm & 0x3B}


def draining(router: HAProxyRouter, backend: str) -> set[int]:
    return {port for _, (_, port, op, adm) in router.runtime.servers(backend).items()
            if adm & 0x38 and not adm & 0x03}


def test_routes_by_host_added_replaced_removed(settings: Settings, router: HAProxyRouter,
                                               ups: list[_Upstream]) -> None:
    pid = router.pid()
    router.set_route(Route("web", ["WEB.localhost.", "www.example.com"], [ups[0].addr]))
    assert get(settings, "web.localhost") == (200, "u0")
    assert get(settings, "Web.Localhost.:8080") == (200, "u0")
    assert get(settings, "www.example.com") == (200, "u0")
    status, body = get(settings, "other.localhost")
    assert status == 404 and "no app here" in body

    router.set_route(Route("web", ["web.localhost"], [ups[1].addr]))
    assert get(settings, "web.localhost") == (200, "u1")
    assert get(settings, "www.example.com")[0] == 404
    router.set_route(Route("api", ["api.localhost"], [ups[2].addr]))
    assert get(settings, "api.localhost") == (200, "u2")
    # A name moved from one app to another is served by the new owner only.
    router.set_route(Route("api", ["api.localhost", "web.localhost"], [ups[2].addr]))
    assert get(settings, "web.localhost") == (200, "u2")
    assert router.routes()["web"].hostnames == []
    router.set_route(Route("api", ["api.localhost"], [ups[2].addr]))
    router.set_route(Route("web", ["web.localhost"], [ups[1].addr]))
    assert get(settings, "web.localhost") == (200, "u1")
    router.set_route(Route("api", ["api.localhost"], []))
    assert get(settings, "api.localhost")[0] == 503
    router.remove_route("web")
    assert get(settings, "web.localhost")[0] == 404
    # Never a new process: every change went through the runtime API.
    assert router.pid() == pid
    assert router.runtime.raw("show info").count("Pid: ") == 1
    router.flush()  # the host map file is written behind the change
    assert "web.localhost" not in Path(router.layout.map_path).read_text()
    assert "api.localhost" in Path(router.layout.map_path).read_text()


def test_kept_alive_client_sees_no_failure_across_20_route_changes(
        settings: Settings, router: HAProxyRouter, ups: list[_Upstream]) -> None:
    """One http.client connection, never retried: every request succeeds and
    the connection (its local port) stays the same through every change."""
    router.set_route(Route("web", ["web.localhost"], [ups[0].addr]))
    conn = http.client.HTTPConnection("127.0.0.1", settings.router_port, timeout=10)
    conn.auto_open = 0  # a closed connection is an error, not a silent reconnect
    conn.connect()
    local = conn.sock.getsockname()
    changes = [
        [ups[1].addr], [ups[1].addr, ups[2].addr, ups[3].addr], [ups[2].addr],
        [ups[0].addr], [ups[0].addr, ups[1].addr, ups[2].addr], [ups[3].addr],
    ]
    failures, requests, seen = [], 0, set()
    for i in range(20):
        hostnames = ["web.localhost"] + (["extra.localhost"] if i % 2 else [])
        if i % 5 == 4:
            router.set_route(Route(f"other{i}", [f"other{i}.localhost"], [ups[0].addr]))
        elif i % 5 == 0 and i:
            router.remove_route(f"other{i - 1}")
        router.set_route(Route("web", hostnames, changes[i % len(changes)]))
        time.sleep(0.05)  # the connection sits idle across the change
        for _ in range(5):
            requests += 1
            try:
                conn.request("GET", "/", headers={"Host": "web.localhost"})
                resp = conn.getresponse()
                body = resp.read().decode()
                if resp.status != 200 or resp.will_close:
                    failures.append((i, resp.status, body[:40]))
                seen.add(body)
            except (OSError, http.client.HTTPException) as e:
                failures.append((i, repr(e)))
                conn.close()
                conn.connect()
    assert failures == [] and requests == 100
    assert conn.sock.getsockname() == local
    assert seen == {"u0", "u1", "u2", "u3"}
    conn.close()


def test_draining_replica_finishes_its_slow_request(settings: Settings, router: HAProxyRouter,
                                                    ups: list[_Upstream]) -> None:
    router.set_route(Route("web", ["web.localhost"], [ups[0].addr]))
    result: list = []
    slow = threading.Thread(target=lambda: result.append(get(settings, "web.localhost", "/slow")))
    slow.start()
    time.sleep(0.4)  # the request is in flight on u0
    router.set_route(Route("web", ["web.localhost"], [ups[1].addr]))
    assert get(settings, "web.localhost") == (200, "u1")  # out of rotation at once
    time.sleep(0.5)
    # Still draining: the replica is not deleted while its request runs.
    assert active(router, "app00000") == {ups[1].port}
    assert ups[0].port in draining(router, "app00000")
    assert not router.wait_drained(0.1)
    slow.join(10)
    assert result == [(200, "u0")]
    assert router.wait_drained(5)
    assert draining(router, "app00000") == set()
    assert active(router, "app00000") == {ups[1].port}


def test_killed_haproxy_restarts_with_its_routes(settings: Settings, router: HAProxyRouter,
                                                 ups: list[_Upstream]) -> None:
    router.set_route(Route("web", ["web.localhost", "shop.example.com"], [ups[0].addr, ups[1].addr]))
    router.set_route(Route("api", ["api.localhost"], [ups[2].addr]))
    router.set_route(Route("api", ["api.localhost"], [ups[3].addr]))
    router.remove_route("gone")
    pid = router.pid()
    workers = [int(p) for p in router.runtime.raw("show info").split("Pid: ")[1].split()[:1]]
    for p in [pid] + workers:
        os.kill(p, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in [pid] + workers) and time.monotonic() < deadline:
        time.sleep(0.02)
    router.ensure_running()
    assert router.pid() not in (None, pid)
    assert get(settings, "shop.example.com")[1] in ("u0", "u1")
    assert get(settings, "api.localhost") == (200, "u3")

    # A new control plane (a restarted `shipway server`) adopts it as it is.
    pid = router.pid()
    router.detach()  # the old control plane is gone
    again = HAProxyRouter(settings, threads=1)
    again.start()
    assert again.pid() == pid
    assert again.routes() == router.routes()
    again.set_route(Route("api", ["api.localhost"], [ups[0].addr]))
    assert get(settings, "api.localhost") == (200, "u0")
    again.stop()


def test_settings_reload_drops_nothing(settings: Settings, router: HAProxyRouter,
                                       ups: list[_Upstream]) -> None:
    """A change of the router's own settings reloads; an in-flight request
    finishes and no new connection is refused meanwhile."""
    router.set_route(Route("web", ["web.localhost"], [ups[0].addr]))
    slow: list = []
    t = threading.Thread(target=lambda: slow.append(get(settings, "web.localhost", "/slow")))
    t.start()
    time.sleep(0.3)
    stop, results = threading.Event(), []

    def hammer() -> None:
        while not stop.is_set():
            try:
                results.append(get(settings, "web.localhost")[0])
            except OSError as e:
                results.append(repr(e))

    h = threading.Thread(target=hammer)
    h.start()
    old_worker = _worker(router)
    try:
        _settings_reload(settings)
    finally:
        stop.set()
        h.join(10)
        t.join(10)
    assert _worker(router) != old_worker
    assert "nbthread 2" in Path(router.layout.main_conf).read_text()
    assert slow == [(200, "u0")]
    assert results and set(results) == {200}


def _idle_tls(settings: Settings, count: int) -> list[http.client.HTTPSConnection]:
    """Like _kept_alive, over the https frontend (its self-signed default certificate)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    conns = [http.client.HTTPSConnection("127.0.0.1", settings.https_port, context=ctx, timeout=10)
             for _ in range(count)]
    for conn in conns:
        conn.request("GET", "/", headers={"Host": "web.localhost"})
        assert conn.getresponse().read() == b"u0"
    return conns


def _next_request(conns: list, path: str = "/headers") -> list:
    """Each connection's next request, never retried on a new connection."""
    results = []
    for conn in conns:
        conn.auto_open = 0  # a closed connection is an error, not a silent reconnect
        try:
            conn.request("GET", path, headers={"Host": "web.localhost",
                                               "X-Forwarded-For": "198.51.100.7"})
            resp = conn.getresponse()
            results.append((resp.status, resp.read().decode()))
        except (OSError, http.client.HTTPException) as e:
            results.append(repr(e))
    return results


def _old_workers(router: HAProxyRouter) -> list[str]:
    """Workers told to stop that have not exited yet (the master CLI)."""
    procs = Runtime(router.layout.master_socket).raw("show proc; quit", timeout=2)
    old = procs.split("# old workers")[1].split("#")[0] if "# old workers" in procs else ""
    return [line.split()[0] for line in old.splitlines() if line.strip()]


def test_settings_reload_keeps_idle_clients_and_routes_them_as_of_now(
        settings: Settings, router: HAProxyRouter, ups: list[_Upstream]) -> None:
    """Idle kept-alive clients (plain and TLS) survive a settings reload:
    the old worker hands each one's next request to the new worker, which
    routes it with the routes of now. A deploy made after the reload (the
    old replica gone, HTTPS-only turned off) is what those requests reach; the app sees the
    client's address once in X-Forwarded-For; the old worker exits once
    its clients have had their answer."""
    router.set_route(Route("web", ["web.localhost"], [ups[0].addr]))
    idle = _kept_alive(settings, 12) + _idle_tls(settings, 4)
    assert router.tls is not None
    router.tls.set_https_only(["web.localhost"], True)
    old_worker = _worker(router)
    _settings_reload(settings)
    assert _worker(router) != old_worker
    assert _old_workers(router) == [old_worker]  # still holding the idle clients
    router.set_route(Route("web", ["web.localhost"], [ups[1].addr]))  # a deploy
    router.tls.set_https_only(["web.localhost"], False)  # no redirect from the old map either
    assert router.wait_drained(5)
    ups[0].close()
    results = _next_request(idle)
    assert results == [(200, "u1 xff=198.51.100.7, 127.0.0.1 proto=http")] * 12 + \
        [(200, "u1 xff=198.51.100.7, 127.0.0.1 proto=https")] * 4
    deadline = time.monotonic() + 5
    while _old_workers(router) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _old_workers(router) == []
    # The new worker wrote each request's access line, with the app's
    # backend (the old worker's, naming its handover backend, are no app's).
    lines = router.runtime.raw("show events shipway_access").splitlines()
    assert sum('shipway-access app00000 GET "/headers" 200 ' in line for line in lines) == 16
    for conn in idle:
        conn.close()


def test_a_stop_does_not_wait_for_an_old_workers_idle_clients(
        settings: Settings, router: HAProxyRouter, ups: list[_Upstream]) -> None:
    """After a settings reload the old worker keeps idle clients for their
    next request (up to the keep-alive timeout); a stop ends it and the
    new one at once, with every proxy process gone."""
    router.set_route(Route("web", ["web.localhost"], [ups[0].addr]))
    idle = _kept_alive(settings, 5)
    _settings_reload(settings)
    idle += _kept_alive(settings, 5)  # the new worker's
    assert _old_workers(router)
    master = router.pid()
    began = time.monotonic()
    router.stop()
    took = time.monotonic() - began
    assert took < 3.0, took
    assert router.pid() is None and not _alive(master)
    assert not os.path.exists(router.layout.handover_dir)
    for conn in idle:
        conn.close()


def test_a_stop_during_a_reloads_overlap_serves_both_workers_idle_clients(
        settings: Settings, router: HAProxyRouter, ups: list[_Upstream]) -> None:
    """Both the old worker (still holding idle clients after a reload) and
    the new one are stopping and have no one to hand over to: each serves
    its idle clients' next request itself instead of a 503."""
    router.set_route(Route("web", ["web.localhost"], [ups[0].addr]))
    old_idle = _kept_alive(settings, 3)
    _settings_reload(settings)
    new_idle = _kept_alive(settings, 3)
    slow: list = []
    t = threading.Thread(target=lambda: slow.append(get(settings, "web.localhost", "/slow")))
    t.start()
    time.sleep(0.4)  # in flight: the stop waits for it
    stopper = threading.Thread(target=router.stop)
    stopper.start()
    time.sleep(0.5)
    results = _next_request(old_idle + new_idle)
    stopper.join(15)
    t.join(10)
    assert slow == [(200, "u0")]
    assert results == [(200, "u0 xff=198.51.100.7, 127.0.0.1 proto=http")] * 6
    assert router.pid() is None


def test_a_stop_whose_count_of_requests_goes_unanswered_cuts_nothing(
        settings: Settings, router: HAProxyRouter, ups: list[_Upstream],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A master CLI that does not answer (a fault injected here) is not
    taken for "no request in flight": the request in flight finishes."""
    router.set_route(Route("web", ["web.localhost"], [ups[0].addr]))
    monkeypatch.setattr(router.process, "requests_in_flight", lambda: None)
    slow: list = []
    t = threading.Thread(target=lambda: slow.append(get(settings, "web.localhost", "/slow")))
    t.start()
    time.sleep(0.4)
    router.stop()
    t.join(10)
    assert slow == [(200, "u0")]
    assert router.pid() is None


def test_a_stop_lets_a_request_finish_serves_idle_clients_and_does_not_wait_for_them(
        settings: Settings, router: HAProxyRouter, ups: list[_Upstream]) -> None:
    """A stop lets the request in flight finish (2 s) and then ends the
    proxy: it does not wait out its 10 s for idle kept-alive clients that
    may never send again (a stopping worker keeps them for a reload's
    handover, router/README.md). An idle client that sends meanwhile is
    answered by the stopping proxy (it has no new worker to hand over to),
    and its connection closed after the answer."""
    router.set_route(Route("web", ["web.localhost"], [ups[0].addr]))
    idle = _kept_alive(settings, 5)
    slow: list = []
    t = threading.Thread(target=lambda: slow.append(get(settings, "web.localhost", "/slow")))
    t.start()
    time.sleep(0.4)  # in flight
    took: list[float] = []

    def stop() -> None:
        began = time.monotonic()
        router.stop()
        took.append(time.monotonic() - began)

    stopper = threading.Thread(target=stop)
    stopper.start()
    time.sleep(0.5)  # the proxy is stopping
    results = _next_request(idle[:3])  # the other two never send again
    will_close = [conn.sock is None for conn in idle[:3]]  # http.client drops a closing connection
    stopper.join(15)
    t.join(10)
    assert slow == [(200, "u0")]
    assert results == [(200, "u0 xff=198.51.100.7, 127.0.0.1 proto=http")] * 3
    assert will_close == [True] * 3
    assert router.pid() is None
    assert 1.0 < took[0] < 6.0, took  # after the slow request, well before the 10 s limit
    for conn in idle:
        conn.close()


def test_reused_server_slot_never_reaches_the_old_replica(settings: Settings, router: HAProxyRouter,
                                                         ups: list[_Upstream]) -> None:
    """A declared server slot freed by one replica and given to another (of
    another app, even) must not reuse an idle connection to the first: that
    would send one app's requests to another app's replica."""
    router.set_route(Route("web", ["web.localhost"], [ups[0].addr]))
    conn = http.client.HTTPConnection("127.0.0.1", settings.router_port, timeout=10)
    for _ in range(5):  # leaves idle upstream connections to u0 in the pool
        conn.request("GET", "/", headers={"Host": "web.localhost"})
        assert conn.getresponse().read() == b"u0"
    router.remove_route("web")
    assert router.wait_drained(5)
    router.set_route(Route("api", ["api.localhost"], [ups[1].addr]))
    assert router._slots["api"] == 0 and router._servers["api"][ups[1].addr] == "s1"
    for _ in range(5):
        conn.request("GET", "/", headers={"Host": "api.localhost"})
        assert conn.getresponse().read() == b"u1"
    conn.close()


def test_more_replicas_than_server_slots(settings: Settings, ups: list[_Upstream]) -> None:
    r = HAProxyRouter(settings, threads=1, server_slots=2)
    r.start()
    try:
        r.set_route(Route("web", ["web.localhost"], [u.addr for u in ups]))
        assert {get(settings, "web.localhost")[1] for _ in range(12)} == {"u0", "u1", "u2", "u3"}
        assert active(r, "app00000") == {u.port for u in ups}
        again = HAProxyRouter(settings, threads=1, server_slots=2)
        again._load_files()
        assert set(again.routes()["web"].upstreams) == {u.addr for u in ups}
        r.set_route(Route("web", ["web.localhost"], [ups[3].addr]))
        assert r.wait_drained(5)
        assert active(r, "app00000") == {ups[3].port}
        assert get(settings, "web.localhost") == (200, "u3")
    finally:
        r.stop()
