"""`shipway certs:auto:refresh` end to end (issue 16 item 3), as Heroku's:
a real `shipway server` with its HAProxy router and a real ACME server
(pebble). A name whose issuance failed (DNS was wrong, then fixed) is
issued at once instead of after its backoff (an hour here); an issued
certificate is renewed on demand and the new one is served by SNI, with
no reload, a kept-alive TLS connection surviving and no request failing.
A second refresh within the server's interval (10 s here, 10 minutes by
default) is refused with a one-line error saying when to try again."""
from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import ShipwayServer, unique
from tests.e2e.helpers import acme_shipway, new_app, wait_for
from tests.pebble import Pebble
from tests.router.test_haproxy_tls import https_get, peer_cert


INTERVAL = 10


def _refresh(user: Any, app: str, *args: str) -> subprocess.CompletedProcess:
    """certs:auto:refresh once the names' last attempt is INTERVAL old: until
    then each try must be the server's refusal (nothing else is waited out)."""
    def once() -> subprocess.CompletedProcess | None:
        done = user.shipway("-a", app, "certs:auto:refresh", *args, check=False)
        if done.returncode == 0:
            return done
        assert "try again after" in done.stderr, done.stderr
        return None
    return wait_for(once, timeout=INTERVAL * 3, interval=1)


@pytest.fixture
def acme_server(tmp_path_factory: pytest.TempPathFactory, pebble: Pebble,
                stack_image: str) -> Iterator[ShipwayServer]:
    with acme_shipway(
            tmp_path_factory.mktemp("shipway-certs"), pebble,
            # A failed name would wait an hour: only a refresh brings it sooner.
            SHIPWAY_ACME_RETRY_SECONDS="3600",
            # A name tried less than this ago is not refreshed (600 s by
            # default): short here, as the renewal below follows an issuance.
            SHIPWAY_CERT_REFRESH_INTERVAL=str(INTERVAL)) as server:
        yield server


class _Traffic:
    """New HTTPS connections to one name, one after another, until stopped:
    every failure is kept (nothing is retried)."""

    def __init__(self, port: int, host: str, root: str) -> None:
        self.port, self.host, self.root = port, host, root
        self.ok, self.failed = 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status, body = https_get(self.port, self.host, self.root)
                if status == 200 and body:
                    self.ok += 1
                else:
                    self.failed.append(status)
            except Exception as e:  # noqa: BLE001 (a failure to count, not to hide)
                self.failed.append(repr(e))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def _haproxy_pid(server: ShipwayServer) -> int:
    return int(next(server.data_dir.glob("**/haproxy.pid")).read_text().split()[0])


def test_refresh_retries_a_failed_name_and_renews_an_issued_one(
        acme_server: ShipwayServer, pebble: Pebble, tmp_path: Path) -> None:
    server = acme_server
    user, app = new_app(server, tmp_path / "home", "procfile", "certs")
    user.push()
    root = pebble.root_pem()
    app_host = f"{app}.shipway.test"
    custom = f"www.{unique('r')}.example"

    def certificate(host: str) -> dict:
        return {c["hostname"]: c for c in user.shipway_json("-a", app, "certs")}[host]["certificate"]

    # DNS is wrong: the issuance fails, and would be retried in an hour.
    pebble.resolve(custom, "127.0.0.2")
    try:
        user.shipway("-a", app, "domains:add", custom)
        failed = wait_for(lambda: certificate(custom)["status"] == "failed" and certificate(custom),
                          timeout=90)
        assert custom in failed["error"]
    finally:
        pebble.unresolve(custom)  # DNS fixed
    said = _refresh(user, app, "--domain", custom).stdout
    assert f"{custom}: issuance queued" in said and app_host not in said
    again = user.shipway("-a", app, "certs:auto:refresh", "--domain", custom, check=False)
    refused = [line for line in again.stderr.splitlines() if line.startswith("Error: ")]
    assert again.returncode == 1 and len(refused) == 1, again.stderr
    assert custom in refused[0] and "try again after" in refused[0]
    wait_for(lambda: certificate(custom)["status"] == "issued", timeout=60)
    assert https_get(server.https_port, custom, root)[0] == 200
    shown = user.shipway("-a", app, "certs").stdout
    assert custom in shown and "issued" in shown

    # An issued certificate, renewed on demand while traffic flows.
    wait_for(lambda: certificate(app_host)["status"] == "issued", timeout=90)
    wait_for(lambda: "Pebble" in peer_cert(server.https_port, app_host).issuer.rfc4514_string(),
             timeout=30)
    first = peer_cert(server.https_port, app_host)
    pid = _haproxy_pid(server)
    ctx = ssl.create_default_context(cadata=root)
    kept = http.client.HTTPSConnection(app_host, server.https_port, context=ctx, timeout=10)
    kept.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.https_port)),
                                server_hostname=app_host)
    kept.request("GET", "/")
    answer = kept.getresponse()
    assert answer.status == 200 and answer.read()
    traffic = _Traffic(server.https_port, app_host, root)
    try:
        queued = json.loads(_refresh(user, app, "--json").stdout)
        assert {q["hostname"]: q["action"] for q in queued["queued"]} == {
            app_host: "renew", custom: "renew"}
        assert queued["woken"] is True
        try:
            renewed = wait_for(lambda: (peer_cert(server.https_port, app_host).serial_number
                                        != first.serial_number
                                        and peer_cert(server.https_port, app_host)), timeout=60)
        except AssertionError as e:  # say what the server did (a CI run once timed out here)
            said = [line for line in server.log().splitlines() if "certificat" in line]
            try:
                stored: object = certificate(app_host)
            except Exception as x:  # noqa: BLE001 (the timeout is the failure to report)
                stored = repr(x)
            raise AssertionError(f"{e}; stored: {stored}; server said:\n"
                                 + "\n".join(said[-30:])) from None
        wait_for(lambda: traffic.ok > 0, timeout=10)  # requests ran after the swap too
    finally:
        traffic.stop()
    assert traffic.failed == [] and traffic.ok > 0
    assert renewed.not_valid_before_utc >= first.not_valid_before_utc
    kept.request("GET", "/")
    answer = kept.getresponse()
    assert answer.status == 200 and answer.read()  # the kept-alive TLS connection survived
    kept.close()
    assert _haproxy_pid(server) == pid  # no restart
    assert https_get(server.https_port, app_host, root)[0] == 200
    actions = [a["action"] for a in user.shipway_json("-a", app, "apps:activity")]
    assert actions.count("certs:auto:refresh") == 2
