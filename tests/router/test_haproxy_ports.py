"""Issue 16: a router never shares its ports. HAProxy binds with
SO_REUSEPORT, so started on a port that another HAProxy (a second Shipway
server's router, the host's own haproxy) already listens on, it starts
anyway and the kernel splits the connections between the two: half of an
app's requests, or of the ACME server's HTTP-01 checks, reach the other
proxy. The router checks its ports with a plain bind before it starts."""
from __future__ import annotations

import os
import socket
import time

import attrs
import pytest

from core.settings import Settings
from router.haproxy import HAProxyRouter
from router.haproxy_process import RouterError
from tests.conftest import free_port
from tests.router.test_haproxy import router, settings  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/sbin/haproxy"), reason="haproxy not installed")


@pytest.mark.parametrize("bind_host", ["127.0.0.1", "0.0.0.0"])
@pytest.mark.parametrize("which", ["router_port", "https_port"])
def test_a_port_another_proxy_listens_on_is_refused_not_shared(
        settings: Settings, which: str, bind_host: str) -> None:  # noqa: F811
    """Another listener with SO_REUSEPORT (as a second HAProxy's): HAProxy
    itself would bind beside it and the kernel would split the clients
    between the two. The router refuses to start, naming the port."""
    settings = attrs.evolve(settings, bind_host=bind_host)
    taken = getattr(settings, which)
    other = _listener(bind_host, taken)
    proxy = HAProxyRouter(settings, threads=1)
    try:
        with pytest.raises(RouterError, match=f"port {taken} .* already in use"):
            proxy.start()
        assert proxy.pid() is None
    finally:
        proxy.stop()
        other.close()


def test_a_new_port_taken_by_another_proxy_is_refused_at_a_settings_reload(
        settings: Settings) -> None:  # noqa: F811
    """A router adopted with a new port takes the reload path, where HAProxy
    binds the new port with SO_REUSEPORT too: refused there as well, and the
    running proxy keeps serving on its old port."""
    first = HAProxyRouter(settings, threads=1)
    first.start()
    pid = first.pid()
    first.detach()
    moved = attrs.evolve(settings, router_port=free_port())
    other = _listener("127.0.0.1", moved.router_port)
    second = HAProxyRouter(moved, threads=1)
    try:
        with pytest.raises(RouterError, match=f"port {moved.router_port} .* already in use"):
            second.start()
        assert first.pid() == pid
        with socket.create_connection(("127.0.0.1", settings.router_port), timeout=5):
            pass
    finally:
        other.close()
        second.stop()
        first.stop()


def test_a_restart_after_its_own_stop_gets_its_ports_back(router: HAProxyRouter) -> None:  # noqa: F811
    """The check never refuses the router's own ports: after a stop that
    leaves a closed connection on the port (TIME_WAIT), and after
    the proxy was killed (supervision starts it again)."""
    port = router.layout.listen_port
    # The proxy closes first: its side of the connection is left in
    # TIME_WAIT on the port once the client has closed too.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as kept:
        kept.sendall(b"GET / HTTP/1.1\r\nHost: nobody.localhost\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := kept.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 404")
    router.stop()
    router.start()
    pid = router.pid()
    assert pid is not None
    os.kill(pid, 9)
    deadline = time.monotonic() + 10
    while router.process.pid() is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    router.ensure_running()
    assert router.pid() not in (None, pid)


def _listener(host: str, port: int) -> socket.socket:
    other = socket.socket()
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    other.bind((host, port))
    other.listen()
    return other
