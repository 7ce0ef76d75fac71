"""Issue 16: the HAProxy router starts whatever file limit its process
actually gets. Its maxconn is computed in the router's process
(router/haproxy_process.maxconn) but the proxy may start under a lower limit
(a server started from another shell or service, a master adopted and
reloaded later): HAProxy's default `strict-limits` then refused to start
("Cannot raise FD limit"), which is what made the two-servers e2e test pin
nginx. A real HAProxy, launched from a child process whose hard limit is
lowered below what the rendered maxconn asks for."""
from __future__ import annotations

import http.client
import os
import resource
from pathlib import Path

import pytest

from core.settings import Settings
from router.haproxy import HAProxyRouter
from router.haproxy_process import maxconn
from router.interface import Route
from tests.conftest import free_port
from tests.router.test_haproxy import _Upstream

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/sbin/haproxy"), reason="haproxy not installed")

LOWERED = 4096  # descriptors of the launching process: far below 2 x maxconn


def _info(router: HAProxyRouter, key: str) -> int:
    line = next(x for x in router.runtime.raw("show info").splitlines() if x.startswith(f"{key}:"))
    return int(line.split(":")[1])


def test_proxy_starts_and_serves_under_a_lower_file_limit_than_its_maxconn(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", router_port=free_port(),
                        base_domain="localhost", https_port=free_port())
    upstream = _Upstream("app")
    router = HAProxyRouter(settings, threads=1)
    assert router.layout.maxconn == maxconn() > LOWERED // 2
    pid = os.fork()
    if pid == 0:  # the launching process, with a lower hard limit than the layout assumed
        code = 1
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (LOWERED, LOWERED))
            router.start()
            router.set_route(Route(app="app", hostnames=["app.test"], upstreams=[upstream.addr]))
            router.detach()
            code = 0
        except BaseException as exc:  # reported through the exit code and stderr
            os.write(2, f"router start failed: {exc}\n".encode())
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    adopted = HAProxyRouter(settings, threads=1)
    try:
        assert os.waitstatus_to_exitcode(status) == 0, "the router did not start under the lower limit"
        adopted.start()  # adopts the running proxy (same settings: no reload)
        assert _info(adopted, "Ulimit-n") <= LOWERED
        assert _info(adopted, "Maxconn") == adopted.layout.maxconn
        c = http.client.HTTPConnection("127.0.0.1", settings.router_port, timeout=10)
        c.request("GET", "/", headers={"Host": "app.test"})
        answer = c.getresponse()
        assert (answer.status, answer.read()) == (200, b"app")
        c.close()
    finally:
        adopted.stop()
        upstream.close()
    assert adopted.pid() is None
