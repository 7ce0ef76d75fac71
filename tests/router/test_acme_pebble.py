"""Certificates issued by a real ACME server (pebble) over HTTP-01 answered
by the real HAProxy router, then served by SNI and verified against pebble's
root."""
from __future__ import annotations

import http.client
import os
from pathlib import Path
from typing import Iterator

import pytest

from core.settings import Settings
from router.acme import ACMEClient, IssueError, new_account_key_pem
from router.haproxy import HAProxyRouter
from router.haproxy_tls import TLSManager
from router.interface import Route
from tests.conftest import free_port
from tests.pebble import Pebble
from tests.router.test_haproxy import _Upstream
from tests.router.test_haproxy_tls import https_get

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/sbin/haproxy"), reason="haproxy not installed")


@pytest.fixture
def routed(tmp_path: Path, pebble: Pebble) -> Iterator[tuple[HAProxyRouter, TLSManager]]:
    settings = Settings(data_dir=tmp_path / "data", router_port=pebble.http_port,
                        base_domain="localhost", https_port=free_port())
    router = HAProxyRouter(settings, threads=1)
    router.start()  # prepares the TLS files itself
    tls = router.tls
    up = _Upstream("app-a")
    router.set_route(Route(app="a", hostnames=["a.shipway.test", "www.custom.example", "broken.example"],
                           upstreams=[up.addr]))
    yield router, tls
    router.stop()
    up.close()


def test_pebble_issues_over_http01_and_the_router_serves_it(routed, pebble: Pebble) -> None:
    router, tls = routed
    acme = ACMEClient(pebble.directory, new_account_key_pem(), email="ops@example.com",
                      ca_bundle=pebble.ca_bundle)
    root = pebble.root_pem()
    for host in ("a.shipway.test", "www.custom.example"):
        issued = acme.issue(host, tls)
        assert issued.not_after > issued.not_before
        tls.install(host, issued.pem)
        assert https_get(router.layout.https_port, host, root) == (200, b"app-a")
    assert tls.hostnames() == {"a.shipway.test", "www.custom.example"}
    # no challenge answer is left behind
    assert Path(router.layout.acme_map).read_text() == ""


def test_a_failed_issuance_says_why_and_plain_http_still_works(routed, pebble: Pebble) -> None:
    router, tls = routed
    pebble.resolve("broken.example", "127.0.0.2")  # nothing listens there
    acme = ACMEClient(pebble.directory, new_account_key_pem(), ca_bundle=pebble.ca_bundle)
    try:
        with pytest.raises(IssueError) as e:
            acme.issue("broken.example", tls)
    finally:
        pebble.unresolve("broken.example")
    assert "broken.example" in str(e.value) and "\n" not in str(e.value)
    c = http.client.HTTPConnection("127.0.0.1", router.layout.listen_port, timeout=5)
    c.request("GET", "/", headers={"Host": "broken.example"})
    assert c.getresponse().read() == b"app-a"


def test_an_untrusted_acme_server_is_refused(pebble: Pebble) -> None:
    acme = ACMEClient(pebble.directory, new_account_key_pem())  # no CA bundle
    with pytest.raises(IssueError, match="certificate verify failed|SSL"):
        acme.issue("x.example", responder=None)  # type: ignore[arg-type]
