"""HTTPS end to end (issue 16 items 3 and 4): a real `shipway server` with a
real HAProxy router gets certificates for a deployed app's names from a real
ACME server (pebble), serves them by SNI, renews them without a reload; and
the API and git smart HTTP are served over TLS, verified by the CLI and git."""
from __future__ import annotations

import functools
import http.client
import json
import socket
import ssl
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.conftest import ShipwayServer, _stop_nginx, unique
from tests.e2e.helpers import User, acme_shipway, new_app, wait_for
from tests.pebble import Pebble, _tls_files
from tests.router.test_haproxy_tls import https_get, peer_cert


def _issuer(server: ShipwayServer, host: str) -> str:
    return peer_cert(server.https_port, host).issuer.rfc4514_string()


def _plain(server: ShipwayServer, host: str) -> bytes:
    r = requests.get(f"http://127.0.0.1:{server.router_port}/", headers={"Host": host}, timeout=10)
    return r.content


@pytest.fixture
def acme_server(tmp_path_factory: pytest.TempPathFactory, pebble: Pebble,
                stack_image: str) -> Iterator[ShipwayServer]:
    # pebble's certificates last years: renew every ~20 s instead of at 2/3.
    with acme_shipway(tmp_path_factory.mktemp("shipway-tls"), pebble,
                      SHIPWAY_ACME_RENEW_FRACTION="0.00000013") as server:
        yield server


def test_app_names_get_acme_certificates_served_by_sni(acme_server: ShipwayServer, pebble: Pebble,
                                                      tmp_path: Path) -> None:
    server = acme_server
    user, app = new_app(server, tmp_path / "home", "procfile", "tls")
    user.push()
    root = pebble.root_pem()
    app_host = f"{app}.shipway.test"
    custom = f"www.{unique('d')}.example"
    broken = f"www.{unique('b')}.example"
    pebble.resolve(broken, "127.0.0.2")  # nothing listens there: pebble's validation fails
    user.shipway("-a", app, "domains:add", custom)
    user.shipway("-a", app, "domains:add", broken)

    def certificate(host: str) -> dict:
        found = {d["hostname"]: d for d in user.shipway_json("-a", app, "domains")}
        return found[host]["certificate"]

    issued = wait_for(lambda: certificate(custom)["status"] == "issued" and certificate(custom),
                      timeout=90)
    assert issued["not_after"] and issued["error"] is None
    wait_for(lambda: "Pebble" in _issuer(server, app_host), timeout=60)
    for host in (app_host, custom):
        status, body = https_get(server.https_port, host, root)
        assert status == 200 and body
    # An unknown name gets the default certificate; the others still work.
    assert "shipway-default" in _issuer(server, "unknown.example")
    assert https_get(server.https_port, custom, root)[0] == 200
    # A failed issuance says why, and plain HTTP still serves that name.
    failed = wait_for(lambda: certificate(broken)["status"] == "failed" and certificate(broken),
                      timeout=90)
    assert broken in failed["error"] and failed["not_after"] is None
    assert _plain(server, broken) == _plain(server, app_host) != b""
    # Renewal swaps the certificate: same HAProxy, a kept-alive TLS connection survives.
    pid = int(next(server.data_dir.glob("**/haproxy.pid")).read_text().split()[0])
    ctx = ssl.create_default_context(cadata=root)
    conn = http.client.HTTPSConnection(custom, server.https_port, context=ctx, timeout=10)
    conn.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.https_port)),
                                server_hostname=custom)
    conn.request("GET", "/")
    answer = conn.getresponse()
    assert answer.status == 200 and answer.read()
    first = peer_cert(server.https_port, custom).serial_number
    wait_for(lambda: peer_cert(server.https_port, custom).serial_number != first, timeout=90)
    conn.request("GET", "/")
    answer = conn.getresponse()
    assert answer.status == 200 and answer.read()
    conn.close()
    assert int(next(server.data_dir.glob("**/haproxy.pid")).read_text().split()[0]) == pid
    # domains:remove stops serving the name over TLS and forgets its certificate.
    user.shipway("-a", app, "domains:remove", custom)
    wait_for(lambda: "shipway-default" in _issuer(server, custom), timeout=30)
    assert https_get(server.https_port, app_host, root)[0] == 200
    # HTTPS-only (config var): plain HTTP redirects to the https port, ACME answers excepted.
    user.shipway("-a", app, "config:set", "HTTPS_ONLY=true")

    def redirect() -> str | None:
        r = requests.get(f"http://127.0.0.1:{server.router_port}/p?q=1", headers={"Host": app_host},
                         allow_redirects=False, timeout=10)
        return r.status_code == 301 and r.headers["Location"]

    assert wait_for(redirect, timeout=30) == f"https://{app_host}:{server.https_port}/p?q=1"
    assert _plain(server, broken)  # the app's name without a certificate is not redirected
    user.shipway("-a", app, "config:unset", "HTTPS_ONLY")
    wait_for(lambda: not redirect(), timeout=30)
    pebble.unresolve(broken)


class _TLSServer(ShipwayServer):
    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.http_port}"


def test_api_and_git_over_https_are_verified(tmp_path_factory: pytest.TempPathFactory,
                                             tmp_path: Path, stack_image: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    pki = tmp_path_factory.mktemp("pki")
    ca, cert, key = _tls_files(pki)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))  # the fixture's own health checks
    server = _TLSServer(tmp_path_factory.mktemp("shipway-https"),
                        env={"SHIPWAY_TLS_CERT": str(cert), "SHIPWAY_TLS_KEY": str(key)})
    try:
        server.start()
        with pytest.raises(requests.exceptions.SSLError):  # not plain HTTP, and verified
            requests.get(server.url + "/api/health", verify=_system_bundle(),
                         timeout=5)
        home = tmp_path / "home"
        home.mkdir()
        trusting = {"SHIPWAY_CA_BUNDLE": str(ca), "GIT_SSL_CAINFO": str(ca)}
        user = User(server, home)
        user.env.pop("REQUESTS_CA_BUNDLE", None)
        user.env.update(trusting)
        user.shipway("signup", "--email", f"{unique('tls')}@example.com",
                     "--password", "correct horse battery")
        app = f"https-{server.instance[-8:]}"
        user.shipway("create", app)
        user.checkout_example("procfile", app)
        assert user.src and f"https://127.0.0.1:{server.http_port}/" in user.git(
            "remote", "get-url", "shipway").stdout
        push = user.push()
        assert push.returncode == 0
        apps = user.shipway_json("apps")
        assert app in json.dumps(apps)
        # Without the CA: the CLI and git refuse the server's certificate.
        user.env.pop("SHIPWAY_CA_BUNDLE")
        user.env.pop("GIT_SSL_CAINFO")
        refused = user.shipway("apps", check=False)
        assert refused.returncode == 1 and "not trusted" in refused.stderr
        assert "Traceback" not in refused.stderr
        ls = user.git("ls-remote", "shipway", check=False)
        assert ls.returncode != 0 and "certificate" in ls.stderr.lower()
    finally:
        server.stop()
        server.cleanup_docker()
        _stop_nginx(server.data_dir)


def _system_bundle() -> str:
    import certifi

    return certifi.where()


def test_the_api_gets_an_acme_certificate_for_its_public_host(
        tmp_path_factory: pytest.TempPathFactory, pebble: Pebble,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = _TLSServer(tmp_path_factory.mktemp("shipway-api-acme"), env={
        "SHIPWAY_ACME_DIRECTORY": pebble.directory, "SHIPWAY_ACME_CA_BUNDLE": pebble.ca_bundle,
        "SHIPWAY_PUBLIC_HOST": "api.shipway.test", "SHIPWAY_BASE_DOMAIN": "shipway.test"})
    server.router_port = pebble.http_port
    try:
        with monkeypatch.context() as m:  # the fixture's health check, before any certificate
            m.setattr(requests, "get", functools.partial(requests.get, verify=False))
            server.start()
        root = pebble.root_pem()
        assert wait_for(lambda: https_get(server.http_port, "api.shipway.test", root,
                                          "/api/health")[0] == 200, timeout=90)
        # git smart HTTP is on the same listener, so served with the same certificate.
        assert "Pebble" in peer_cert(server.http_port, "api.shipway.test").issuer.rfc4514_string()
    finally:
        server.stop()
        server.cleanup_docker()
        _stop_nginx(server.data_dir)
