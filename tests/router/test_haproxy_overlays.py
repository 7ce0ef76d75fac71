"""Maintenance mode and canaries in the HAProxy router, for real (a haproxy
process, tiny upstreams on 127.0.0.1), changed at run time and restored
after the proxy is killed."""
from __future__ import annotations

import http.client
import os
import signal
import time
from collections import Counter

import pytest

from router import haproxy_mapfile
from router.haproxy import HAProxyRouter
from router.haproxy_overlays import canary_weights
from router.interface import Route
from core.settings import Settings
from tests.router.test_haproxy import (_Upstream, _next_request, _worker, get, router,  # noqa: F401 (fixtures)
                                       settings, ups)

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/sbin/haproxy"), reason="haproxy not installed")


def _full(settings: Settings, host: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", settings.router_port, timeout=10)
    conn.request("GET", "/", headers={"Host": host})
    resp = conn.getresponse()
    resp.body = resp.read().decode()  # type: ignore[attr-defined]
    conn.close()
    return resp


def test_maintenance_answers_503_with_retry_after_and_off_serves_at_once(
        settings: Settings, router: HAProxyRouter, ups: list[_Upstream]) -> None:
    pid = router.pid()
    router.set_route(Route("web", ["web.localhost", "www.example.com"], [ups[0].addr]))
    router.set_route(Route("other", ["other.localhost"], [ups[1].addr]))
    router.set_maintenance("web", True)
    for host in ("web.localhost", "www.example.com"):
        resp = _full(settings, host)
        assert resp.status == 503
        assert resp.getheader("Retry-After") == "120"
        assert resp.getheader("Content-Type").startswith("text/plain")
        assert "maintenance" in resp.body
    assert get(settings, "other.localhost") == (200, "u1")  # other apps untouched
    # A deploy during maintenance keeps it (the new replica is not served).
    router.set_route(Route("web", ["web.localhost", "new.example.com"], [ups[2].addr]))
    assert _full(settings, "new.example.com").status == 503
    assert _full(settings, "web.localhost").status == 503
    router.set_maintenance("web", False)
    assert get(settings, "web.localhost") == (200, "u2")
    assert get(settings, "new.example.com") == (200, "u2")
    assert router.pid() == pid  # never a reload


def test_maintenance_and_canary_come_back_after_the_proxy_is_killed(
        settings: Settings, router: HAProxyRouter, ups: list[_Upstream]) -> None:
    router.set_route(Route("web", ["web.localhost"], [ups[0].addr]))
    router.set_route(Route("api", ["api.localhost"], [ups[1].addr]))
    router.set_route(Route("api2", ["api2.localhost"], [ups[2].addr]))
    router.set_maintenance("web", True)
    router.set_canary("api", "api2", 100)
    pid = router.pid()
    workers = [int(p) for p in router.runtime.raw("show info").split("Pid: ")[1].split()[:1]]
    killed = time.monotonic()
    for p in [pid] + workers:
        os.kill(p, signal.SIGKILL)
    # The router's own watch starts it again, with both, within 2 s.
    status = None
    while time.monotonic() - killed < 2.0:
        try:
            status = _full(settings, "web.localhost").status
            if status == 503:
                break
        except OSError:
            pass
        time.sleep(0.05)
    assert status == 503, f"not back in maintenance within 2 s ({status})"
    assert router.pid() not in (None, pid)
    assert {get(settings, "api.localhost")[1] for _ in range(6)} == {"u2"}


def test_canary_sends_its_share_and_follows_the_canary_app(
        settings: Settings, router: HAProxyRouter, ups: list[_Upstream]) -> None:
    router.set_route(Route("app", ["app.localhost"], [ups[0].addr]))
    router.set_route(Route("next", ["next.localhost"], [ups[1].addr]))
    router.set_canary("app", "next", 25)
    seen = Counter(get(settings, "app.localhost")[1] for _ in range(80))
    assert 16 <= seen["u1"] <= 24 and seen["u0"] + seen["u1"] == 80, seen
    assert {get(settings, "next.localhost")[1] for _ in range(5)} == {"u1"}  # untouched
    # The canary app redeploys: APP's share follows its new replicas.
    router.set_route(Route("next", ["next.localhost"], [ups[2].addr, ups[3].addr]))
    seen = Counter(get(settings, "app.localhost")[1] for _ in range(80))
    assert 16 <= seen["u2"] + seen["u3"] <= 24 and seen["u1"] == 0, seen
    # APP scales: still 25 %.
    router.set_route(Route("app", ["app.localhost"], [ups[0].addr, ups[1].addr]))
    seen = Counter(get(settings, "app.localhost")[1] for _ in range(80))
    assert 16 <= seen["u2"] + seen["u3"] <= 24, seen
    router.set_canary("app", None)
    seen = Counter(get(settings, "app.localhost")[1] for _ in range(20))
    assert set(seen) == {"u0", "u1"}, seen
    assert router.wait_drained(10)  # the canary servers left the backend
    assert not any(n.startswith("c_") for n in router.runtime.servers("app00000"))


def test_canary_weights() -> None:
    assert canary_weights(1, 1, 25) == (3, 1)
    assert canary_weights(1, 2, 25) == (6, 1)
    assert canary_weights(3, 1, 0) == (1, 0)
    assert canary_weights(3, 1, 100) == (0, 1)
    a, c = canary_weights(7, 9, 33)
    assert max(a, c) <= 256 and abs(9 * c / (7 * a + 9 * c) - 0.33) < 0.01


def test_the_app_past_the_last_slot_reloads_and_keeps_names_overlays_and_clients(
        settings: Settings, ups: list[_Upstream], monkeypatch: pytest.MonkeyPatch) -> None:
    """The app that finds every slot taken declares another chunk of
    backends: a reload, made by a deploy. The new worker reads the files,
    so the host map must hold the last change (its file trails changes:
    made to trail by 5 s here, a busy disk), and maintenance and canaries,
    which are in no file, must be put back; an idle client keeps its
    connection."""
    monkeypatch.setattr(haproxy_mapfile, "COALESCE", 5.0)
    r = HAProxyRouter(settings, threads=1, slots=256)
    r.start()
    try:
        for i in range(254):
            r.set_route(Route(f"a{i}", [f"a{i}.localhost"], [ups[0].addr]))
        r.set_route(Route("web", ["web.localhost"], [ups[1].addr]))
        r.set_route(Route("api", ["api.localhost"], [ups[2].addr]))  # the 256th slot
        r.set_maintenance("a0", True)
        r.set_canary("api", "web", 100)
        idle = http.client.HTTPConnection("127.0.0.1", settings.router_port, timeout=10)
        idle.request("GET", "/", headers={"Host": "web.localhost"})
        assert idle.getresponse().read() == b"u1"
        r.set_route(Route("web", ["web.localhost", "late.localhost"], [ups[1].addr]))
        old_worker = _worker(r)
        r.set_route(Route("new", ["new.localhost"], [ups[3].addr]))  # the 257th app
        assert _worker(r) != old_worker  # it was a reload
        assert r._slots["new"] == 256
        assert get(settings, "new.localhost") == (200, "u3")
        assert get(settings, "late.localhost") == (200, "u1")
        assert get(settings, "a1.localhost") == (200, "u0")
        assert _full(settings, "a0.localhost").status == 503  # still in maintenance
        assert {get(settings, "api.localhost")[1] for _ in range(6)} == {"u1"}  # still the canary
        assert _next_request([idle]) == [(200, "u1 xff=198.51.100.7, 127.0.0.1 proto=http")]
        idle.close()
    finally:
        r.stop()
