"""HAProxy's access lines as Heroku-style router lines, pulled from a real
HAProxy's ring over its admin socket (`show events ... -w`)."""
from __future__ import annotations

import http.client
import os
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from core.settings import Settings
from logger.router_lines import RouterLogReceiver, router_line
from logger.store import LogStore
from router.haproxy import HAProxyRouter
from router.haproxy_conf import NOT_FOUND_BACKEND
from tests.conftest import free_port
from tests.router.test_haproxy_idle import cpu_seconds, workers

haproxy = pytest.mark.skipif(not os.path.exists("/usr/sbin/haproxy"), reason="haproxy not installed")


def test_access_line_becomes_a_router_line() -> None:
    raw = b'shipway-access app00003 GET "/a%20b?x=1" 200 73 12 1 10.0.0.9\n'
    assert router_line(raw) == ("app00003", 'at=info method=GET path="/a%20b?x=1" status=200 '
                                'bytes=73 connect=1ms service=12ms fwd="10.0.0.9"')
    failed = router_line(b'shipway-access app00003 GET "/" 503 0 3 -1 10.0.0.9')
    assert failed is not None and failed[1].startswith("at=error ") and "connect=0ms" in failed[1]
    assert router_line(b"something else") is None


@pytest.fixture
def router(tmp_path: Path) -> Iterator[HAProxyRouter]:
    settings = Settings(data_dir=tmp_path / "data", router_port=free_port(),
                        base_domain="localhost", https_port=free_port())
    r = HAProxyRouter(settings, threads=1)
    r.start()
    yield r
    r.stop()


def _get(router: HAProxyRouter, path: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", router.settings.router_port, timeout=5)
    conn.request("GET", path, headers={"Host": "nobody.localhost"})
    conn.getresponse().read()
    conn.close()


def _wait(check: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)
    return check()


def _paths(store: LogStore) -> list[str]:
    return [line.format().split('path="', 1)[1].split('"', 1)[0] for line in store.tail("shop", 100)
            if 'path="/probe"' not in line.format()]


def _state(receiver: RouterLogReceiver, store: LogStore) -> str:
    """What a failed wait found (CI runs on a busy host: say why, not just False)."""
    return (f"paths={_paths(store)} sessions={receiver.sessions} lines={receiver.lines} "
            f"unparsed={receiver.unparsed} dropped={store.dropped} failures={store.failures}")


def _reading(router: HAProxyRouter, store: LogStore) -> bool:
    """Sends /probe until one reaches the store: the reader's `show events`
    is then running (HAProxy does not say when it starts; a line sent just
    before is skipped by `-n`). _paths leaves the probes out."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        _get(router, "/probe")
        if _wait(lambda: any('path="/probe"' in line.format()
                             for line in store.tail("shop", 100)), 0.3):
            return True
    return False


@haproxy
def test_receiver_pulls_lines_across_a_reload_and_lets_the_old_worker_go(
        router: HAProxyRouter, tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.sqlite3")
    _get(router, "/before")  # in the ring before the reader came: skipped (-n)
    time.sleep(1.1)  # Uptime_sec: the worker is older than the reader
    receiver = RouterLogReceiver(router.layout.admin_socket, store,
                                 {NOT_FOUND_BACKEND: "shop"}.get)
    receiver.start()
    try:
        assert _wait(lambda: receiver.sessions == 1)
        assert _reading(router, store)
        _get(router, "/a%20b?x=1")
        assert _wait(lambda: _paths(store) == ["/a%20b?x=1"], 30), _state(receiver, store)
        line = store.tail("shop", 1)[0].format().split(" ", 1)[1]
        assert line.startswith('shipway[router]: at=info method=GET path="/a%20b?x=1" status=404 ')
        old = router.pid() and workers(router.pid())
        router.process.reload()  # a settings reload: a new worker
        _get(router, "/after-reload")  # possibly before the reader reconnected
        assert _wait(lambda: _paths(store) == ["/a%20b?x=1", "/after-reload"], 30), \
            _state(receiver, store)
        # The old worker's `-w` session is hung up: the worker exits.
        assert _wait(lambda: not set(old) & set(workers(router.pid())), 5)
        assert receiver.unparsed == 0
    finally:
        receiver.stop()
        store.close()


@haproxy
def test_a_failing_line_does_not_end_the_reader(router: HAProxyRouter, tmp_path: Path) -> None:
    """Whatever goes wrong with one line (here the backend lookup raises),
    the reader logs it and reads on in a new session: the thread does
    not die and take every later router line with it."""
    store = LogStore(tmp_path / "logs.sqlite3")
    failed: list[str] = []

    def app_for(backend: str) -> str | None:
        if not failed:
            failed.append(backend)
            raise RuntimeError("a bug in the lookup")
        return {NOT_FOUND_BACKEND: "shop"}.get(backend)

    receiver = RouterLogReceiver(router.layout.admin_socket, store, app_for)
    receiver.start()
    try:
        assert _wait(lambda: receiver.sessions == 1)
        assert _wait(lambda: bool(_get(router, "/boom") or failed), 10)
        assert _wait(lambda: receiver.sessions >= 2)
        assert _reading(router, store)
        _get(router, "/after")
        assert _wait(lambda: _paths(store)[-1:] == ["/after"])
    finally:
        receiver.stop()
        store.close()


@haproxy
def test_receiver_waits_quietly_for_a_missing_haproxy(tmp_path: Path) -> None:
    """No HAProxy: the reader backs off; it starts reading once one runs."""
    store = LogStore(tmp_path / "logs.sqlite3")
    settings = Settings(data_dir=tmp_path / "data", router_port=free_port(),
                        base_domain="localhost", https_port=free_port())
    r = HAProxyRouter(settings, threads=1)
    receiver = RouterLogReceiver(r.layout.admin_socket, store, {NOT_FOUND_BACKEND: "shop"}.get)
    receiver.start()
    try:
        time.sleep(1)
        r.start()
        (worker,) = workers(r.pid())
        _get(r, "/first")  # a worker younger than the reader: read whole
        assert _wait(lambda: _paths(store) == ["/first"])
        before = cpu_seconds(worker)
        time.sleep(1)
        assert cpu_seconds(worker) - before < 0.1  # the waiting session costs nothing
    finally:
        receiver.stop()
        r.stop()
        store.close()
