"""The HAProxy router's replay of a request that a pooled connection lost,
for real: a haproxy process and an injected fault in the replica.

With `http-reuse always` any request may be sent on an idle connection to
the replica, and a replica may close that connection just as the request
arrives (its keep-alive timeout). The request then gets an empty response.
`retry-on conn-failure empty-response` sends it again on a new connection,
but only for idempotent methods: HAProxy 2.6 would replay a POST too, so
the frontends disable L7 retries for the others (router/haproxy_conf.py,
NO_REPLAY). The fault is deterministic: the replica answers the first
request of each connection and closes the connection, without answering,
as soon as a second request arrives on it.
"""
from __future__ import annotations

import http.client
import os
import socket
import threading
import time
from itertools import count
from typing import BinaryIO, Iterator

import pytest

from core.settings import Settings
from router.haproxy import HAProxyRouter
from router.haproxy_conf import slot_backend
from router.interface import Route
from tests.router.test_haproxy import router, settings  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/sbin/haproxy"), reason="haproxy not installed")

HOST = "app.localhost"


class _ClosingReplica:
    """A replica that closes a kept-alive connection when it is reused.

    Each connection's first request gets a keep-alive 200 naming the
    connection; its second request is read whole and the connection closed
    with no answer (HAProxy sees an empty response). `seen` records every
    request as (connection number, method, path), answered or not.
    """

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.addr = ("127.0.0.1", self.listener.getsockname()[1])
        self.seen: list[tuple[int, str, str]] = []
        self._lock = threading.Lock()
        self._numbers = count(1)
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn, next(self._numbers)), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        reader = conn.makefile("rb")
        try:
            for index in count():
                request = _read_request(reader)
                if request is None:
                    return
                with self._lock:
                    self.seen.append((number, *request))
                if index > 0:
                    return  # the fault: closed as the reused connection's request arrives
                body = f"conn {number}".encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        except OSError:
            return
        finally:
            reader.close()
            conn.close()

    def requests(self, path: str) -> list[tuple[int, str]]:
        with self._lock:
            return [(n, method) for n, method, p in self.seen if p == path]

    def close(self) -> None:
        self.listener.close()


def _read_request(reader: BinaryIO) -> tuple[str, str] | None:
    """(method, path) of the next request, its body read; None at EOF."""
    line = reader.readline()
    if not line:
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    length = 0
    while True:
        header = reader.readline()
        if header in (b"\r\n", b"\n", b""):
            break
        name, _, value = header.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length:
        reader.read(length)
    return method, path


@pytest.fixture
def replica() -> Iterator[_ClosingReplica]:
    r = _ClosingReplica()
    yield r
    r.close()


def _request(settings: Settings, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", settings.router_port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Host": HOST})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _idle_connections(router: HAProxyRouter, server: str) -> int:
    """Idle pooled connections to `backend/server` (`show servers conn`: its
    header names the columns)."""
    backend = server.partition("/")[0]
    lines = router.runtime.raw(f"show servers conn {backend}").splitlines()
    columns = lines[0].lstrip("# ").split()
    for line in lines[1:]:
        fields = line.split()
        if fields and fields[0] == server:
            return int(fields[columns.index("idle_cur")])
    raise AssertionError(f"no server {server} in {lines}")


def _pool_one_used_connection(settings: Settings, router: HAProxyRouter,
                              replica: _ClosingReplica) -> None:
    """A warm-up request answered by the replica on a new connection, which
    HAProxy then keeps idle: the next request will be sent on it."""
    router.set_route(Route("app", [HOST], [replica.addr]))
    assert _request(settings, "GET", "/warm") == (200, b"conn 1")
    server = f'{slot_backend(router._slots["app"])}/{router._servers["app"][replica.addr]}'
    deadline = time.monotonic() + 10  # the pool takes the connection as the stream ends
    while _idle_connections(router, server) != 1:
        assert time.monotonic() < deadline, "HAProxy did not keep the replica's connection idle"
        time.sleep(0.01)


def test_get_lost_on_a_reused_connection_is_sent_again_on_a_new_one(
        settings: Settings, router: HAProxyRouter, replica: _ClosingReplica) -> None:
    _pool_one_used_connection(settings, router, replica)
    status, body = _request(settings, "GET", "/probe")
    # Sent on the pooled connection 1 (closed unanswered), then on connection 2.
    assert replica.requests("/probe") == [(1, "GET"), (2, "GET")]
    assert (status, body) == (200, b"conn 2")


def test_post_lost_on_a_reused_connection_is_not_replayed(
        settings: Settings, router: HAProxyRouter, replica: _ClosingReplica) -> None:
    _pool_one_used_connection(settings, router, replica)
    status, _ = _request(settings, "POST", "/order", body=b"buy=1")
    # The replica may have acted on it: it must not get it a second time.
    assert replica.requests("/order") == [(1, "POST")]
    assert status in (502, 503)
