"""Deploy webhooks (issue 18 item 7) at the service level, against a real
HTTP(S) receiver on 127.0.0.1: signed POSTs for succeeded and failed
releases, retries with backoff, the address rule at add and at send time,
the certificate verified, and a slow receiver never holding up a deploy."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.server
import json
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from builder.fetch_guard import GuardRules, Refused, parse_allow
from controller.errors import BadRequest, DeployFailed
from controller.webhook_delivery import Delivery, post
from tests.controller.test_releases import deploy, new_slug


class Receiver:
    """A real HTTP server on 127.0.0.1 that records each POST; `fail_first`
    answers 500 that many times first; `delay` seconds before answering."""

    def __init__(self, fail_first: int = 0, delay: float = 0.0,
                 tls: tuple[Path, Path] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[int] = []
        self.fail_first, self.delay = fail_first, delay
        self.got = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                time.sleep(receiver.delay)
                status = 500 if len(receiver.answers) < receiver.fail_first else 204
                with receiver.got:
                    receiver.answers.append(status)
                    if status == 204:
                        receiver.requests.append({"headers": dict(self.headers), "body": body,
                                                  "path": self.path, "at": time.monotonic()})
                    receiver.got.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        end = time.monotonic() + timeout
        with self.got:
            while len(self.requests) < count and time.monotonic() < end:
                self.got.wait(0.2)
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def check_signature(request: dict[str, Any], secret: str, max_age: float = 300) -> dict:
    """What a receiver does: the HMAC of '<timestamp>.<body>' and a fresh timestamp."""
    headers = {k.lower(): v for k, v in request["headers"].items()}
    stamp = headers["shipway-timestamp"]
    want = "sha256=" + hmac.new(secret.encode(), stamp.encode() + b"." + request["body"],
                                hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["shipway-signature"], want)
    assert abs(time.time() - int(stamp)) < max_age
    return json.loads(request["body"])


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(**kw: Any) -> Receiver:
        made.append(Receiver(**kw))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_signed_posts_for_a_succeeded_and_a_failed_release(open_store, receiver):
    store = open_store(fetch_allow="127.0.0.1")
    from tests.controller.conftest import RecordingDeployer
    deployer = RecordingDeployer(store)
    store.set_deployer(deployer)
    owner = store.signup("owner@example.com", "owner-password")[0]
    app = store.create_app(owner, "hooked")
    got = receiver()
    hook = store.add_webhook(owner, app.name, f"http://127.0.0.1:{got.port}/hooks?x=1")
    assert hook.secret and hook.secret.startswith("whsec_")
    assert [h.secret for h in store.list_webhooks(owner, app.name)] == [None]
    deploy(store, app, owner, "aaa1111")
    deployer.fail_with = DeployFailed("v2 failed to start", log_tail=["boom"])
    with pytest.raises(DeployFailed):
        store.deploy_slug(app, new_slug(store, app, "bbb2222"), "Deploy bbb2222", owner.email)
    # Several sender threads: the two POSTs may arrive in either order.
    first, second = sorted(got.wait_for(2), key=lambda r: json.loads(r["body"])["release"])
    assert first["path"] == second["path"] == "/hooks?x=1"
    ok, failed = check_signature(first, hook.secret), check_signature(second, hook.secret)
    assert (ok["app"], ok["release"], ok["status"], ok["commit"], ok["user"]) == (
        "hooked", 1, "succeeded", "aaa1111", owner.email)
    assert (failed["release"], failed["status"], failed["commit"]) == (2, "failed", "bbb2222")
    dt.datetime.fromisoformat(ok["created_at"])
    # A wrong secret does not verify: the signature is the secret's.
    with pytest.raises(AssertionError):
        check_signature(first, "whsec_not-the-secret")
    # The secret is kept encrypted: not in the database's files in clear.
    url = store.settings.effective_database_url
    if url.startswith("sqlite:///"):
        db_file = Path(url[len("sqlite:///"):])
        stored = b"".join(p.read_bytes() for p in (db_file, Path(f"{db_file}-wal"))
                          if p.exists())
        assert b"whsec_" not in stored and hook.secret.encode() not in stored


def test_a_receiver_answering_500_twice_gets_it_on_the_third_attempt(open_store, receiver):
    store = open_store(fetch_allow="127.0.0.1")
    from tests.controller.conftest import RecordingDeployer
    store.set_deployer(RecordingDeployer(store))
    owner = store.signup("owner@example.com", "owner-password")[0]
    app = store.create_app(owner, "retried")
    got = receiver(fail_first=2)
    hook = store.add_webhook(owner, app.name, f"http://127.0.0.1:{got.port}/")
    started = time.monotonic()
    deploy(store, app, owner, "aaa1111")
    [request] = got.wait_for(1)
    assert got.answers == [500, 500, 204]
    # backoff: 1 s then 2 s before the attempts that follow
    assert request["at"] - started >= 2.5
    check_signature(request, hook.secret)


def test_a_slow_receiver_never_holds_up_the_deploy(open_store, receiver):
    store = open_store(fetch_allow="127.0.0.1")
    from tests.controller.conftest import RecordingDeployer
    store.set_deployer(RecordingDeployer(store))
    owner = store.signup("owner@example.com", "owner-password")[0]
    app = store.create_app(owner, "slowhook")
    got = receiver(delay=4.0)
    store.add_webhook(owner, app.name, f"http://127.0.0.1:{got.port}/")
    started = time.monotonic()
    deploy(store, app, owner, "aaa1111")
    assert time.monotonic() - started < 2.0
    assert got.wait_for(1, timeout=15)


def test_loopback_and_private_urls_are_refused_at_add_time(store, owner, app, receiver):
    got = receiver()
    for url, words in [(f"https://127.0.0.1:{got.port}/", "loopback"),
                       ("https://10.1.2.3/hook", "private"),
                       ("https://169.254.169.254/latest", "link-local"),
                       (f"http://127.0.0.1:{got.port}/", "https"),
                       ("ftp://example.com/x", "https"),
                       ("https://user:pw@example.com/", "credentials")]:
        with pytest.raises(BadRequest) as refused:
            store.add_webhook(owner, app.name, url)
        assert words in str(refused.value), (url, str(refused.value))
    assert store.list_webhooks(owner, app.name) == []


def test_the_rule_holds_at_send_time_on_the_resolved_address(receiver):
    """A webhook added while allowed (or whose name later points inside)
    is refused when sent: the check is on the address connected to."""
    got = receiver()
    delivery = Delivery(webhook_id=1, app="a", url=f"http://127.0.0.1:{got.port}/",
                        secret=b"s", body=b"{}", release=1)
    with pytest.raises(Refused):
        post(delivery, GuardRules())
    https = Delivery(webhook_id=1, app="a", url=f"https://localhost:{got.port}/",
                     secret=b"s", body=b"{}", release=1)
    with pytest.raises(Refused):
        post(https, GuardRules())
    assert got.answers == []
    assert post(delivery, GuardRules(allow=parse_allow("127.0.0.1"))) == 204


def _ca_for_localhost(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_verifies_the_receiver_certificate(tmp_path, receiver, monkeypatch):
    cert, key = _ca_for_localhost(tmp_path)
    got = receiver(tls=(cert, key))
    delivery = Delivery(webhook_id=1, app="a", url=f"https://localhost:{got.port}/",
                        secret=b"s", body=b"{}", release=1)
    rules = GuardRules(allow=parse_allow("localhost"))
    with pytest.raises(ssl.SSLCertVerificationError):
        post(delivery, rules)  # self-signed, not trusted
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the operator trusts this CA
    assert post(delivery, rules) == 204
    assert len(got.requests) == 1


def test_a_webhook_the_rule_no_longer_allows_is_not_sent(open_store, receiver):
    """Added while SHIPWAY_FETCH_ALLOW listed it; the server restarted
    without it: the deploy's POST is refused at send time, nothing arrives."""
    from tests.controller.conftest import RecordingDeployer
    got = receiver()
    allowed = open_store(fetch_allow="127.0.0.1")
    owner = allowed.signup("owner@example.com", "owner-password")[0]
    app = allowed.create_app(owner, "was-allowed")
    allowed.add_webhook(owner, app.name, f"http://127.0.0.1:{got.port}/")
    allowed.close()
    store = open_store()
    store.set_deployer(RecordingDeployer(store))
    deploy(store, app, owner, "aaa1111")
    time.sleep(3)
    assert got.answers == [] and got.requests == []


def test_the_secret_survives_a_master_key_rotation(open_store, receiver):
    from tests.controller.conftest import RecordingDeployer
    store = open_store(fetch_allow="127.0.0.1")
    store.set_deployer(RecordingDeployer(store))
    owner = store.signup("owner@example.com", "owner-password")[0]
    app = store.create_app(owner, "rotated")
    got = receiver()
    hook = store.add_webhook(owner, app.name, f"http://127.0.0.1:{got.port}/")
    assert store.rotate_master_key() >= 1
    deploy(store, app, owner, "aaa1111")
    [request] = got.wait_for(1)
    check_signature(request, hook.secret)
