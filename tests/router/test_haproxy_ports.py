"""Issue 16: a router never shares its ports. HAProxy binds with
SO_REUSEPORT, so started on a port that another HAProxy (a second Shipway
server's router, the host's own haproxy) already listens on, it starts
anyway and the kernel splits the connections between the two: half of an
app's requests, or of the ACME server's HTTP-01 checks, reach the other
proxy. The router checks its ports with a plain bind before it starts."""
from __future__ import annotations

import os
import socket

import pytest

from core.settings import Settings
from router.haproxy import HAProxyRouter
from router.haproxy_process import RouterError
from tests.router.test_haproxy import router, settings  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/sbin/haproxy"), reason="haproxy not installed")


@pytest.mark.parametrize("which", ["router_port", "https_port"])
def test_a_port_another_proxy_listens_on_is_refused_not_shared(settings: Settings, which: str) -> None:  # noqa: F811
    """Another listener with SO_REUSEPORT (as a second HAProxy's): HAProxy
    itself would bind beside it and the kernel would split the clients
    between the two. The router refuses to start, naming the port."""
    taken = getattr(settings, which)
    other = socket.socket()
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    other.bind(("127.0.0.1", taken))
    other.listen()
    proxy = HAProxyRouter(settings, threads=1)
    try:
        with pytest.raises(RouterError, match=f"port {taken} .* already in use"):
            proxy.start()
        assert proxy.pid() is None
    finally:
        proxy.stop()
        other.close()


def test_a_restart_after_its_own_stop_gets_its_ports_back(router: HAProxyRouter) -> None:  # noqa: F811
    """The check never refuses the router's own ports: after a stop, and
    after the proxy was killed (supervision starts it again)."""
    router.stop()
    router.start()
    pid = router.pid()
    assert pid is not None
    os.kill(pid, 9)
    router.ensure_running()
    assert router.pid() not in (None, pid)
