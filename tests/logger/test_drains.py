"""Log drains against real syslog servers on 127.0.0.1 (TCP and TLS), a
drain that accepts and never reads, and the address rule."""
from __future__ import annotations

import datetime as dt
import re
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.addresses import GuardRules, parse_allow
from logger.drains import (BadDrain, DrainHub, check_reachable, parse_drain_url, redact,
                           syslog_frame, tls_context)
from logger.store import LogLine, LogStore

LOCAL = GuardRules(allow=parse_allow("127.0.0.1"))
FRAME = re.compile(rb"(\d+) ")


class SyslogServer:
    """A real syslog receiver (octet counting), TCP or TLS."""

    def __init__(self, context: ssl.SSLContext | None = None, read: bool = True) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.context, self.read = context, read
        self.messages: list[bytes] = []
        self.arrivals: list[float] = []  # time.time() each message was read (bench/logs.py)
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if self.context is not None:
                conn = self.context.wrap_socket(conn, server_side=True)
            if not self.read:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                self.held.append(conn)  # accepted, never read
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while (m := FRAME.match(buf)) and len(buf) >= m.end() + int(m.group(1)):
                self.messages.append(buf[m.end():m.end() + int(m.group(1))])
                self.arrivals.append(time.time())
                buf = buf[m.end() + int(m.group(1)):]

    def wait_for(self, count: int, timeout: float = 15) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.messages

    def close(self) -> None:
        self.listener.close()
        for conn in self.held:
            conn.close()


def _certificate(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A self-signed certificate for 127.0.0.1; returns the server context and
    the CA bundle a client trusts it with."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    import ipaddress
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = tmp_path / "cert.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem = tmp_path / "key.pem"
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(pem, key_pem)
    return server, pem


@pytest.fixture
def store(tmp_path: Path):
    made = LogStore(tmp_path / "logs.sqlite3")
    yield made
    made.close()


def test_frame_is_rfc5424_with_octet_counting() -> None:
    at = dt.datetime(2026, 12, 2, 7, 0, 0, 5, tzinfo=dt.timezone.utc)
    frame = syslog_frame("shop", LogLine(at, "app", "web.3f2a1c", "héllo", 7))
    body = "<190>1 2026-12-02T07:00:00.000005Z shipway shop web.3f2a1c - - héllo".encode()
    assert frame == str(len(body)).encode() + b" " + body
    router = syslog_frame("shop", LogLine(at, "shipway", "router", "at=info", 8))
    assert b" shop shipway.router - - at=info" in router


def test_tcp_and_tls_drains_get_every_line(store: LogStore, tmp_path: Path) -> None:
    server_context, bundle = _certificate(tmp_path)
    plain, secure = SyslogServer(), SyslogServer(server_context)
    hub = DrainHub(LOCAL, tls_context(str(bundle)))
    store.tap(hub.tap)
    hub.set("shop", [(1, f"syslog://127.0.0.1:{plain.port}"),
                     (2, f"syslog+tls://127.0.0.1:{secure.port}")])
    for i in range(200):
        store.add("shop", "app", "web.1", f"line {i}")
    store.add("other", "app", "web.1", "not for this drain")
    for server in (plain, secure):
        got = server.wait_for(200)
        assert len(got) == 200 and got[0].endswith(b"shop web.1 - - line 0")
        assert got[-1].endswith(b"line 199")
    assert hub.status("shop")[2]["sent"] == 200
    hub.stop()
    plain.close(), secure.close()


def test_tls_drain_refuses_an_unknown_certificate(store: LogStore, tmp_path: Path) -> None:
    server_context, _ = _certificate(tmp_path)
    secure = SyslogServer(server_context)
    hub = DrainHub(LOCAL, tls_context())  # the system store only
    store.tap(hub.tap)
    hub.set("shop", [(1, f"syslog+tls://127.0.0.1:{secure.port}")])
    store.add("shop", "app", "web.1", "secret")
    deadline = time.monotonic() + 10
    while not hub.status("shop")[1]["last_error"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "CERTIFICATE_VERIFY_FAILED" in hub.status("shop")[1]["last_error"]
    assert secure.messages == []
    hub.stop()
    secure.close()


def test_a_drain_that_never_reads_holds_up_nobody(store: LogStore) -> None:
    """The stuck drain fills its bounded buffer and counts drops; the log
    store, its followers and the other drain keep flowing."""
    stuck, good = SyslogServer(read=False), SyslogServer()
    hub = DrainHub(LOCAL, tls_context(), buffer_lines=2000)
    store.tap(hub.tap)
    hub.set("shop", [(1, f"syslog://127.0.0.1:{stuck.port}"),
                     (2, f"syslog://127.0.0.1:{good.port}")])
    followed: list[int] = []
    store.subscribe("shop", lambda line: followed.append(line.seq))
    spent = 0.0
    for burst in range(20):
        started = time.monotonic()
        for i in range(1000):
            store.add("shop", "app", "web.1", f"{burst * 1000 + i:05d} " + "z" * 200)
        spent += time.monotonic() - started
        time.sleep(0.1)  # ~10,000 lines/s: a pace a drain that reads keeps up with
    assert spent < 5  # adding never waited on a drain
    assert len(good.wait_for(20_000, timeout=30)) == 20_000
    store.flush()
    assert len(followed) == 20_000
    status = hub.status("shop")
    assert status[1]["dropped"] > 5_000 and status[2]["dropped"] == 0
    hub.stop()
    stuck.close(), good.close()


def test_loopback_drain_refused_without_the_allow_setting() -> None:
    target = parse_drain_url("syslog://127.0.0.1:6514")
    with pytest.raises(BadDrain, match="loopback"):
        check_reachable(target, GuardRules())
    check_reachable(target, LOCAL)  # allowed by SHIPWAY_FETCH_ALLOW
    with pytest.raises(BadDrain, match="private"):
        check_reachable(parse_drain_url("https://10.1.2.3/logs"), GuardRules())


def test_the_rule_is_checked_again_at_connect(store: LogStore) -> None:
    server = SyslogServer()
    hub = DrainHub(GuardRules(), tls_context())  # nothing allowed
    store.tap(hub.tap)
    hub.set("shop", [(1, f"syslog://127.0.0.1:{server.port}")])
    store.add("shop", "app", "web.1", "never sent")
    deadline = time.monotonic() + 10
    while not hub.status("shop")[1]["last_error"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "loopback" in hub.status("shop")[1]["last_error"]
    assert server.messages == []
    hub.stop()
    server.close()


@pytest.mark.parametrize("url, problem", [
    ("ftp://example.com/", "a drain is"),
    ("syslog://example.com", "needs a port"),
    ("syslog://u:p@example.com:514", "just syslog"),
    ("https://exa mple.com/", "printable"),
    ("https://example.com:99999/", "not a valid URL"),
    ("https:///path", "no host"),
])
def test_bad_urls(url: str, problem: str) -> None:
    with pytest.raises(BadDrain, match=problem):
        parse_drain_url(url)


def test_credentials_never_shown() -> None:
    shown = redact("https://user:s3cret@logs.example.com:8443/in?token=abc")
    assert "s3cret" not in shown and "abc" not in shown and "user" not in shown
    assert shown == "https://***@logs.example.com:8443/in?***"


def test_https_drain_posts_logplex_batches_and_retries(store: LogStore, tmp_path: Path) -> None:
    """A real HTTPS server on 127.0.0.1 that fails the first POST: the batch
    comes again (backoff) and every line arrives once, with the header."""
    import http.server

    server_context, bundle = _certificate(tmp_path)
    frames: list[bytes] = []
    calls: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            calls.append(self.headers["Content-Type"])
            if len(calls) == 1:
                self.send_response(500)
                self.end_headers()
                return
            while (m := FRAME.match(body)):
                frames.append(body[m.end():m.end() + int(m.group(1))])
                body = body[m.end() + int(m.group(1)):]
            self.send_response(204)
            self.end_headers()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = server_context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    hub = DrainHub(LOCAL, tls_context(str(bundle)))
    store.tap(hub.tap)
    hub.set("shop", [(1, f"https://u:p@127.0.0.1:{httpd.server_address[1]}/in")])
    for i in range(50):
        store.add("shop", "app", "web.1", f"post {i}")
    deadline = time.monotonic() + 15
    while len(frames) < 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [f.rsplit(b" ", 1)[1] for f in frames] == [str(i).encode() for i in range(50)]
    assert calls[0] == "application/logplex-1" and len(calls) >= 2
    assert hub.status("shop")[1]["last_error"] == "HTTP 500"
    hub.stop()
    httpd.shutdown()


def test_a_drains_buffer_takes_a_batch_whole_or_drops_its_oldest_lines() -> None:
    """Drain.put: a batch that fits is buffered at once, in order; past the
    bound the oldest lines go first and are counted, whichever batch they
    came in. (The drain's address is refused: nothing leaves the buffer.)"""
    from logger.drains import Drain

    at = dt.datetime(2026, 12, 2, 7, 0, 0, tzinfo=dt.timezone.utc)
    drain = Drain(1, "shop", parse_drain_url("syslog://127.0.0.1:9"), GuardRules(),
                  tls_context(), buffer_lines=10)
    try:
        made = [LogLine(at, "app", "web.1", f"line {seq}", seq) for seq in range(1, 28)]
        drain.put(made[:6])
        assert [line.seq for line in drain._buffer] == [1, 2, 3, 4, 5, 6]
        drain.put(made[6:12])
        assert [line.seq for line in drain._buffer] == list(range(3, 13)) and drain.dropped == 2
        drain.put(made[12:27])
        assert [line.seq for line in drain._buffer] == list(range(18, 28))
        assert drain.dropped == 17 and drain._bytes == sum(len(x.text) for x in made[17:])
    finally:
        drain.stop()
