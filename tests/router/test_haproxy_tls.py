"""The HAProxy router's TLS frontend, for real: certificates loaded, swapped
and removed through the runtime API of a running haproxy, checked with real
TLS handshakes (SNI) from Python's ssl module."""
from __future__ import annotations

import datetime
import http.client
import os
import socket
import ssl
from pathlib import Path
from typing import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.settings import Settings
from router.haproxy import HAProxyRouter
from router.haproxy_tls import TLSManager, check_hostname
from router.interface import Route
from tests.conftest import free_port
from tests.router.test_haproxy import _Upstream

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/sbin/haproxy"), reason="haproxy not installed")


class _CA:
    """A private CA issuing leaf certificates for the tests."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shipway test CA")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(hours=1))
                     .not_valid_after(now + datetime.timedelta(days=2))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def leaf(self, host: str) -> tuple[str, int]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        serial = x509.random_serial_number()
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
                .issuer_name(self.cert.subject).public_key(key.public_key()).serial_number(serial)
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
                .sign(self.key, hashes.SHA256()))
        pem = (cert.public_bytes(serialization.Encoding.PEM).decode()
               + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()).decode())
        return pem, serial


@pytest.fixture(scope="module")
def ca() -> _CA:
    return _CA()


def tls_router(tmp_path: Path, router_port: int | None = None) -> tuple[HAProxyRouter, TLSManager]:
    settings = Settings(data_dir=tmp_path / "data", router_port=router_port or free_port(),
                        base_domain="localhost", https_port=free_port())
    router = HAProxyRouter(settings, threads=1)
    router.start()  # prepares the TLS files itself
    assert router.tls is not None
    return router, router.tls


@pytest.fixture
def routed(tmp_path: Path) -> Iterator[tuple[HAProxyRouter, TLSManager, _Upstream]]:
    router, tls = tls_router(tmp_path)
    up = _Upstream("app-a")
    router.set_route(Route(app="a", hostnames=["a.test", "b.test"], upstreams=[up.addr]))
    yield router, tls, up
    router.stop()
    up.close()


def peer_cert(port: int, sni: str) -> x509.Certificate:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            return x509.load_der_x509_certificate(s.getpeercert(binary_form=True))


def https_get(port: int, sni: str, ca_pem: str, path: str = "/") -> tuple[int, bytes]:
    ctx = ssl.create_default_context(cadata=ca_pem)
    conn = http.client.HTTPSConnection(sni, port, context=ctx, timeout=5)
    conn.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                server_hostname=sni)
    try:
        conn.request("GET", path, headers={"Host": sni})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_sni_serves_each_names_certificate_and_the_default_for_others(routed, ca) -> None:
    router, tls, _ = routed
    port = router.layout.https_port
    pem, serial = ca.leaf("a.test")
    tls.install("A.Test.", pem)
    assert https_get(port, "a.test", ca.pem) == (200, b"app-a")
    # b.test has no certificate: the default one, not a.test's, and a.test still works.
    default = peer_cert(port, "b.test")
    assert default.serial_number != serial
    assert "shipway-default" in default.subject.rfc4514_string()
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(port, "b.test", ca.pem)
    assert peer_cert(port, "unknown.example").serial_number == default.serial_number
    assert https_get(port, "a.test", ca.pem) == (200, b"app-a")


def test_renewal_swaps_the_certificate_without_reload_and_keeps_connections(routed, ca) -> None:
    router, tls, _ = routed
    port = router.layout.https_port
    pem1, serial1 = ca.leaf("a.test")
    tls.install("a.test", pem1)
    pid = router.pid()
    ctx = ssl.create_default_context(cadata=ca.pem)
    conn = http.client.HTTPSConnection("a.test", port, context=ctx, timeout=5)
    conn.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="a.test")
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"app-a"
    kept = conn.sock
    pem2, serial2 = ca.leaf("a.test")
    tls.install("a.test", pem2)
    assert peer_cert(port, "a.test").serial_number == serial2 != serial1
    conn.request("GET", "/")  # the same TLS connection, still served
    assert conn.getresponse().read() == b"app-a"
    assert conn.sock is kept
    conn.close()
    assert router.pid() == pid
    assert Path(tls.cert_path("a.test")).read_text().startswith("-----BEGIN CERTIFICATE")


def test_remove_stops_serving_the_certificate(routed, ca) -> None:
    router, tls, _ = routed
    port = router.layout.https_port
    pem, serial = ca.leaf("a.test")
    tls.install("a.test", pem)
    assert peer_cert(port, "a.test").serial_number == serial
    tls.remove("a.test")
    assert peer_cert(port, "a.test").serial_number != serial
    assert not os.path.exists(tls.cert_path("a.test"))
    assert "a.test" not in tls.hostnames()


def test_a_restarted_proxy_serves_the_certificates_from_its_files(routed, ca) -> None:
    router, tls, _ = routed
    port = router.layout.https_port
    pem, serial = ca.leaf("a.test")
    tls.install("a.test", pem)
    router.stop()
    router.start()
    assert peer_cert(port, "a.test").serial_number == serial
    assert https_get(port, "a.test", ca.pem) == (200, b"app-a")


def test_acme_challenges_answered_on_plain_http_and_https_only_redirect(routed) -> None:
    router, tls, _ = routed
    port = router.layout.listen_port

    def get(path: str, host: str = "a.test") -> http.client.HTTPResponse:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", path, headers={"Host": host})
        r = c.getresponse()
        r.body = r.read()
        c.close()
        return r

    tls.add_challenge("tok_EN-1", "tok_EN-1.thumbprint")
    r = get("/.well-known/acme-challenge/tok_EN-1", host="new.example")
    assert (r.status, r.body) == (200, b"tok_EN-1.thumbprint")
    tls.remove_challenge("tok_EN-1")
    assert get("/.well-known/acme-challenge/tok_EN-1", host="a.test").body == b"app-a"
    tls.set_https_only(["a.test"], True)
    r = get("/x?y=1")
    assert r.status == 301
    assert r.getheader("Location") == f"https://a.test:{router.layout.https_port}/x?y=1"
    r = get("/x", host="A.Test.:80")  # the name as a client may send it
    assert (r.status, r.getheader("Location")) == (301, f"https://a.test:{router.layout.https_port}/x")
    assert get("/", host="b.test").body == b"app-a"  # other names untouched
    tls.set_https_only(["a.test"], False)
    assert get("/").body == b"app-a"


@pytest.mark.parametrize("bad", ["", "a..b", "-a.test", "a" * 64 + ".test", "*.test",
                                 "a b.test", "x" * 250 + ".test", "a.test/../x"])
def test_bad_hostnames_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        check_hostname(bad)


def test_hostnames_are_normalized() -> None:
    assert check_hostname("WWW.Example.COM.") == "www.example.com"
    assert check_hostname("Bücher.Example") == "xn--bcher-kva.example"
