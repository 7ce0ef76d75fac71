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

import ipaddress
import select
import socket
import socketserver
import threading
import time
from typing import Iterable
from urllib.parse import urlsplit

import attrs
import psutil

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_HEAD_LIMIT = 64 * 1024
_CHUNK = 64 * 1024
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def host_addresses() -> set[IPAddress]:
    """Every address on this host's interfaces (docker bridges included)."""
    found: set[IPAddress] = set()
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    found.add(ipaddress.ip_address(addr.address.split("%", 1)[0]))
                except ValueError:
                    continue
    return found


def address_problem(ip: IPAddress, own: Iterable[IPAddress] = ()) -> str | None:
    """What kind of address a fetch may not reach `ip` as, or None if it may.

    IPv6 forms that carry an IPv4 address (mapped, 6to4, Teredo, NAT64's
    well-known prefix, which a NAT64 gateway turns into that IPv4 address)
    are judged by that address too."""
    checks: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        nat64 = (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        if ip.ipv4_mapped or nat64:
            # Only a translation: what it reaches is the IPv4 address (the
            # wrapper itself sits in a range that is_reserved would refuse).
            checks = [ip.ipv4_mapped or nat64]  # type: ignore[list-item]
        embedded = [ip.sixtofour, ip.teredo[1] if ip.teredo else None]
        checks += [each for each in embedded if each is not None]
    own = set(own)
    for each in checks:
        for kind, hit in (("a loopback", each.is_loopback), ("a link-local", each.is_link_local),
                          ("a multicast", each.is_multicast),
                          ("an unspecified", each.is_unspecified),
                          ("a reserved", each.is_reserved), ("a private", each.is_private),
                          ("a non-public", not each.is_global)):
            if hit:
                return f"{kind} address"
        if each in own:
            return "an address of this host"
    return None


def _split_host_port(entry: str) -> tuple[str, int | None]:
    """"host", "host:port", "[v6]:port" or a bare IPv6 address."""
    entry = entry.strip().lower().rstrip(".")
    if entry.count(":") > 1 and not entry.startswith("["):
        return entry, None  # a bare IPv6 address
    parts = urlsplit(f"//{entry}")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise ValueError(f"not a host or host:port: {entry!r}")
    return host, parts.port


def parse_allow(value: str) -> frozenset[tuple[str, int | None]]:
    """`fetch_allow` ("a.example, 10.0.0.5:8080, [fd00::1]:443") as
    (host, port or None for any port) pairs."""
    return frozenset(_split_host_port(item) for item in value.split(",") if item.strip())


@attrs.frozen
class GuardRules:
    """What the guard lets through and how long it waits."""

    allow: frozenset[tuple[str, int | None]] = frozenset()
    connect_timeout: float = 10.0
    # A tunnel where nothing moves for this long is closed: a server that
    # accepts and then stays silent fails as fast as one that never answers.
    idle_timeout: float = 10.0

    def allows(self, host: str, port: int) -> bool:
        host = host.lower().rstrip(".").strip("[]")
        return (host, None) in self.allow or (host, port) in self.allow


class Refused(Exception):
    """A connection the guard will not make; the message is for the pusher."""


def resolve_checked(host: str, port: int, rules: GuardRules,
                    own: Iterable[IPAddress] | None = None) -> list[tuple]:
    """The socket addresses to connect to for host:port, each checked.

    Raises Refused when the name does not resolve or any address it resolves
    to is not allowed (a name with one public and one private answer is
    refused whole: which one a client would pick is the attacker's choice)."""
    bare = host.strip("[]")
    try:
        infos = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError):
        raise Refused(f"{host}: host not found") from None
    if rules.allows(bare, port):
        return [info[4] for info in infos]
    own = host_addresses() if own is None else own
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if rules.allows(str(ip), port):
            continue
        problem = address_problem(ip, own)
        if problem:
            raise Refused(f"{host} resolves to {problem} "
                          "(set SHIPWAY_FETCH_ALLOW to allow it)")
    return [info[4] for info in infos]


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
                host, port = _split_host_port(target)
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
