"""Certificates from a real ACME server (pebble) through the real HAProxy
router, kept encrypted in the controller's database: status, renewal at a
fraction of the lifetime without a reload, failures with backoff, forgetting."""
from __future__ import annotations

import datetime as dt
import http.client
import os
import socket
import ssl
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa

from controller.certificates import CertificateManager, CertificateStore, certificates
from controller.store import Store, open_controller
from core.settings import Settings
from router.acme import ACMEClient
from router.interface import Route
from tests.pebble import Pebble
from tests.router.test_haproxy import _Upstream
from tests.router.test_haproxy_tls import https_get, peer_cert, tls_router

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/sbin/haproxy"), reason="haproxy not installed")


@pytest.fixture
def world(tmp_path: Path, pebble: Pebble) -> Iterator[dict]:
    store: Store = open_controller(Settings(data_dir=tmp_path / "ctl"))
    owner = store.signup("owner@example.com", "owner-password")[0]
    app = store.create_app(owner, "demo")
    router, tls = tls_router(tmp_path, router_port=pebble.http_port)
    up = _Upstream("demo")
    names = ["demo.shipway.test", "www.custom.example"]
    router.set_route(Route(app="demo", hostnames=names, upstreams=[up.addr]))
    certs = CertificateStore(store.db, store.keyring, renew_fraction=2 / 3, retry_seconds=60)

    def acme() -> ACMEClient:
        return ACMEClient(pebble.directory, certs.account_key(pebble.directory),
                          email="ops@example.com", ca_bundle=pebble.ca_bundle)

    manager = CertificateManager(certs, tls, acme)
    yield dict(store=store, app=app, router=router, tls=tls, certs=certs, manager=manager,
               names=names, root=pebble.root_pem())
    router.stop()
    up.close()
    store.close()


def test_pending_names_are_issued_stored_encrypted_and_served(world) -> None:
    m, certs, router = world["manager"], world["certs"], world["router"]
    m.sync(world["app"].id, world["names"])
    assert {s.status for s in certs.statuses(world["names"]).values()} == {"pending"}
    assert sorted(m.tick()) == sorted(world["names"])
    for host, st in certs.statuses(world["names"]).items():
        assert st.status == "issued" and st.error is None
        assert st.not_after > dt.datetime.now(dt.timezone.utc)
        assert https_get(router.layout.https_port, host, world["root"]) == (200, b"demo")
    with world["store"].db.read() as conn:
        raw = " ".join(str(v) for row in conn.execute(sa.select(certificates)).all() for v in row)
    assert "BEGIN" not in raw and "PRIVATE" not in raw
    assert m.tick() == []  # nothing due until 2/3 of the lifetime


def test_renewal_swaps_the_certificate_without_reload_or_closing_connections(world) -> None:
    m, certs, router = world["manager"], world["certs"], world["router"]
    host = "demo.shipway.test"
    m.sync(world["app"].id, [host])
    m.tick()
    st = certs.statuses([host])[host]
    first = peer_cert(router.layout.https_port, host).serial_number
    pid = router.pid()
    ctx = ssl.create_default_context(cadata=world["root"])
    conn = http.client.HTTPSConnection(host, router.layout.https_port, context=ctx, timeout=5)
    conn.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", router.layout.https_port)),
                                server_hostname=host)
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"demo"
    # Just before the renewal point nothing happens; at it, the name is renewed.
    not_before = _not_before(certs, host)
    renew_at = not_before + (st.not_after - not_before) * 2 / 3  # the 2/3 of the lifetime
    assert m.tick(at=renew_at - dt.timedelta(seconds=1)) == []
    renewed = m.tick(at=renew_at + dt.timedelta(seconds=1))
    # Why not, if not (a CI run once failed here): the stored error.
    assert renewed == [host], certs.statuses([host])[host]
    assert peer_cert(router.layout.https_port, host).serial_number != first
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"demo"  # the kept-alive TLS connection survived
    conn.close()
    assert router.pid() == pid


def _not_before(certs: CertificateStore, host: str) -> dt.datetime:
    with certs.db.read() as conn:
        return conn.execute(sa.select(certificates.c.not_before)
                            .where(certificates.c.hostname == host)).scalar_one()


def test_a_failed_issuance_is_reported_retried_later_and_plain_http_works(world, pebble: Pebble) -> None:
    m, certs, router = world["manager"], world["certs"], world["router"]
    host = "www.custom.example"
    pebble.resolve(host, "127.0.0.2")  # nothing listens there
    try:
        m.sync(world["app"].id, [host])
        assert m.tick() == []
        st = certs.statuses([host])[host]
        assert st.status == "failed" and host in st.error and st.not_after is None
        assert certs.due() == []  # backoff: not retried at once
        assert certs.due(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=61)) == [host]
        m.tick(at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=61))
        assert certs.due(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=61)) == []  # doubled
        c = http.client.HTTPConnection("127.0.0.1", router.layout.listen_port, timeout=5)
        c.request("GET", "/", headers={"Host": host})
        assert c.getresponse().read() == b"demo"
    finally:
        pebble.unresolve(host)


def test_a_name_removed_is_forgotten_and_no_longer_served(world) -> None:
    m, certs, router = world["manager"], world["certs"], world["router"]
    m.sync(world["app"].id, world["names"])
    assert sorted(m.tick()) == sorted(world["names"]), certs.statuses(world["names"])
    gone = "www.custom.example"
    served = peer_cert(router.layout.https_port, gone).serial_number
    m.sync(world["app"].id, ["demo.shipway.test"])
    assert gone not in certs.statuses([gone])
    assert peer_cert(router.layout.https_port, gone).serial_number != served
    assert https_get(router.layout.https_port, "demo.shipway.test", world["root"]) == (200, b"demo")
