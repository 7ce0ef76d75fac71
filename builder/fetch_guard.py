"""Where a push's fetches (buildpacks, submodules) may connect, enforced on
every connection git makes.

git runs with this guard as its only way out: an HTTP proxy on 127.0.0.1
(`http.proxy`: CONNECT for https, absolute URIs for http, so redirects come
through it too) that git:// reaches through `core.gitProxy`. The guard
resolves each name itself, refuses the connection if any resolved address is
loopback, private, link-local, multicast, reserved, unspecified or one of this
host's own, and connects to the address it checked, so a DNS answer cannot
change between the check and the connection. A refused address is never
connected to: the answer is the same whatever listens there. The operator
opens holes with `fetch_allow` (host or host:port, as the URL names it or as
the address it resolves to).
"""
from __future__ import annotations

import select
import socket
import socketserver
import threading
import time
from urllib.parse import urlsplit

from core.addresses import (  # noqa: F401 (re-exported: the one address rule)
    GuardRules, IPAddress, Refused, address_problem, host_addresses, parse_allow,
    resolve_checked, split_host_port)

_HEAD_LIMIT = 64 * 1024
_CHUNK = 64 * 1024

class GuardProxy:
    """One fetch's guard: a proxy on 127.0.0.1 that lives as long as the
    fetch, and remembers why it refused (the fetch reports that, in its own
    words, instead of git's)."""

    def __init__(self, rules: GuardRules) -> None:
        self.rules = rules
        self.refusals: list[str] = []
        self.failures: list[str] = []  # allowed addresses that did not answer
        self._own = host_addresses()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        guard = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                guard._serve(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler,
                                                       bind_and_activate=True)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.2}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "GuardProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            for sock in list(self._sockets):
                _close(sock)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _serve(self, client: socket.socket) -> None:
        self._track(client)
        client.settimeout(self.rules.idle_timeout)
        try:
            head, rest = _read_head(client)
            method, target, version, headers = _parse_head(head)
            if method == "CONNECT":
                host, port = split_host_port(target)
                if port is None:
                    raise ValueError("CONNECT without a port")
                forward = b""
            else:
                parts = urlsplit(target)
                if parts.scheme != "http" or not parts.hostname:
                    raise ValueError("only absolute http:// URIs are proxied")
                host, port = parts.hostname, parts.port or 80
                path = parts.path or "/"
                if parts.query:
                    path += "?" + parts.query
                kept = [line for line in headers
                        if line.split(":", 1)[0].strip().lower()
                        not in ("proxy-connection", "proxy-authorization", "connection")]
                forward = ("\r\n".join([f"{method} {path} {version}", *kept,
                                        "Connection: close"]) + "\r\n\r\n").encode("latin-1")
            upstream = self._connect(host, port)
        except Refused as e:
            self.refusals.append(str(e))
            _answer(client, "403 Forbidden")
            return
        except OSError as e:
            self.failures.append(_connect_failure(e))
            _answer(client, "502 Bad Gateway")
            return
        except (ValueError, UnicodeError):
            _answer(client, "400 Bad Request")
            return
        try:
            if method == "CONNECT":
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            upstream.sendall(forward + rest)
            _relay(client, upstream, self.rules.idle_timeout)
        except OSError:
            pass
        finally:
            _close(upstream)
            _close(client)

    def _connect(self, host: str, port: int) -> socket.socket:
        addresses = resolve_checked(host, port, self.rules, self._own)
        last: OSError | None = None
        for address in addresses:
            family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            self._track(sock)
            sock.settimeout(self.rules.connect_timeout)
            try:
                sock.connect(address)  # the checked address, never the name
                sock.settimeout(self.rules.idle_timeout)
                return sock
            except OSError as e:
                last = e
                _close(sock)
        raise last or OSError(f"no address for {host}")


def _connect_failure(error: OSError) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return "could not connect"


def _read_head(sock: socket.socket) -> tuple[str, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > _HEAD_LIMIT:
            raise ValueError("request head too large")
        chunk = sock.recv(_CHUNK)
        if not chunk:
            raise ValueError("closed before the request head")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest


def _parse_head(head: str) -> tuple[str, str, str, list[str]]:
    first, *headers = head.split("\r\n")
    method, target, version = first.split(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError("not HTTP/1.x")
    return method.upper(), target, version, headers


def _answer(sock: socket.socket, status: str) -> None:
    try:
        sock.sendall(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                     .encode())
    except OSError:
        pass
    _close(sock)


def _relay(a: socket.socket, b: socket.socket, idle: float) -> None:
    """Copy bytes both ways until both sides are done (a side that closes
    its end is passed on as a half-close: git:// clients close theirs while
    the pack still comes) or nothing moves for `idle` seconds."""
    peers = {a: b, b: a}
    reading = [a, b]
    last = time.monotonic()
    while reading:
        ready, _, _ = select.select(reading, [], [], 1.0)
        if not ready:
            if time.monotonic() - last > idle:
                return
            continue
        for sock in ready:
            data = sock.recv(_CHUNK)
            if not data:
                reading.remove(sock)
                try:
                    peers[sock].shutdown(socket.SHUT_WR)
                except OSError:
                    return
                continue
            peers[sock].sendall(data)
            last = time.monotonic()


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
