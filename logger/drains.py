"""Log drains: every line of an app forwarded to a syslog server (TCP or
TLS, RFC 5424 with octet counting, as Heroku's) or an HTTPS endpoint
(batched POSTs of application/logplex-1 frames, retried with backoff).

Each drain has its own bounded buffer and its own thread: the log store's
writer only appends to the buffer (a full buffer drops the oldest line and
counts it), so a slow, dead or silent drain never holds up the app, the
store, the followers or the other drains. Connections follow the fetch rule
(core.addresses): the name is resolved and checked at each connect, and the
checked address is the one connected to.
"""
from __future__ import annotations

import http.client
import socket
import ssl
import threading
from collections import deque
from operator import attrgetter
from typing import Any, Callable
from urllib.parse import urlsplit

import attrs

from core.addresses import GuardRules, Refused, resolve_checked
from logger.store import LogLine

SCHEMES = {"syslog": 514, "syslog+tls": 6514, "https": 443}
HTTP_BATCH = 500
IO_TIMEOUT = 10.0
MAX_BACKOFF = 30.0
# Besides its line count, a drain's buffer holds at most this many bytes of
# text (the lines are the store's, shared): a 50,000-line burst fits whole.
BUFFER_BYTES = 16 << 20
_text = attrgetter("text")


class BadDrain(ValueError):
    """A drain URL users gave that cannot be used; the message says why."""


@attrs.frozen
class DrainTarget:
    url: str
    scheme: str
    host: str
    port: int

    @property
    def shown(self) -> str:
        """The URL without its credentials or query (never echoed)."""
        return redact(self.url)


def redact(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = f":{parts.port}" if parts.port else ""
    user = "***@" if parts.username or parts.password else ""
    query = "?***" if parts.query else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}{query}"


def parse_drain_url(url: str) -> DrainTarget:
    """syslog://HOST:PORT, syslog+tls://HOST:PORT or https://HOST[:PORT]/PATH."""
    if len(url) > 2000 or any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise BadDrain("a drain URL is at most 2000 printable characters without spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise BadDrain("not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise BadDrain("a drain is syslog://HOST:PORT, syslog+tls://HOST:PORT or https://...")
    if not parts.hostname:
        raise BadDrain("the drain URL has no host")
    if scheme.startswith("syslog"):
        if port is None:
            raise BadDrain("a syslog drain needs a port (syslog://HOST:PORT)")
        if parts.username or parts.password or parts.path not in ("", "/") or parts.query:
            raise BadDrain("a syslog drain is just syslog://HOST:PORT")
    return DrainTarget(url, scheme, parts.hostname, port or SCHEMES[scheme])


def syslog_frame(app: str, line: LogLine) -> bytes:
    """`LEN <190>1 TIMESTAMP shipway APP PROCID - - MSG` (local7.info)."""
    procid = line.process if line.source == "app" else f"{line.source}.{line.process}"
    message = (f"<190>1 {line.stamp()} shipway {app} {procid[:128]} - - "
               f"{line.text}").encode("utf-8", "replace")
    return str(len(message)).encode() + b" " + message


class Drain:
    """One drain of one app: buffer, thread, counters."""

    def __init__(self, drain_id: int, app: str, target: DrainTarget, rules: GuardRules,
                 context: ssl.SSLContext, buffer_lines: int) -> None:
        self.id, self.app, self.target = drain_id, app, target
        self.rules, self.context = rules, context
        self.sent = 0
        self.dropped = 0
        self.last_error: str | None = None
        self._buffer: deque[LogLine] = deque()
        self._limit = buffer_lines
        self._bytes = 0  # characters of the lines buffered (bounded by BUFFER_BYTES)
        self._cond = threading.Condition()
        self._stopping = False
        self._sock: Any = None
        threading.Thread(target=self._run, name=f"drain-{app}-{drain_id}", daemon=True).start()

    def put(self, lines: list[LogLine]) -> None:
        """Buffer lines, oldest first; past the bound the oldest are dropped."""
        size = sum(map(len, map(_text, lines)))
        with self._cond:
            if not self._buffer:
                self._cond.notify()
            buffer, limit = self._buffer, self._limit
            if len(buffer) + len(lines) <= limit and self._bytes + size <= BUFFER_BYTES:
                buffer.extend(lines)  # room for all (the usual case): no step per line
                self._bytes += size
                return
            for line in lines:
                while buffer and (len(buffer) >= limit
                                  or self._bytes + len(line.text) > BUFFER_BYTES):
                    self._bytes -= len(buffer.popleft().text)
                    self.dropped += 1
                buffer.append(line)
                self._bytes += len(line.text)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._close()

    def status(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.target.shown, "sent": self.sent,
                "dropped": self.dropped, "buffered": len(self._buffer),
                "last_error": self.last_error}

    def _take(self, most: int) -> list[LogLine]:
        with self._cond:
            while not self._buffer and not self._stopping:
                self._cond.wait()
            return [self._buffer[i] for i in range(min(most, len(self._buffer)))]

    def _done(self, batch: list[LogLine]) -> None:
        # By number, not count: lines dropped while sending already left.
        with self._cond:
            while self._buffer and self._buffer[0].seq <= batch[-1].seq:
                self._bytes -= len(self._buffer.popleft().text)
        self.sent += len(batch)

    def _run(self) -> None:
        backoff = 1.0
        while not self._stopping:
            batch = self._take(HTTP_BATCH)
            if self._stopping:
                break
            try:
                if self.target.scheme == "https":
                    self._post(batch)
                else:
                    self._send(batch)
                self._done(batch)
                backoff = 1.0
            except (OSError, Refused, http.client.HTTPException, ValueError) as exc:
                self.last_error = _describe(exc)
                self._close()
                with self._cond:  # wait, but wake at once when stopped
                    self._cond.wait_for(lambda: self._stopping, backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
        self._close()

    def _connect(self) -> socket.socket:
        addresses = resolve_checked(self.target.host, self.target.port, self.rules)
        last: OSError = OSError("no address")
        for address in addresses:
            family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.settimeout(IO_TIMEOUT)  # a drain that stops reading fails the send
            try:
                sock.connect(address)
            except OSError as exc:
                sock.close()
                last = exc
                continue
            if self.target.scheme != "syslog":
                sock = self.context.wrap_socket(sock, server_hostname=self.target.host)
            return sock
        raise last

    def _send(self, batch: list[LogLine]) -> None:
        if self._sock is None:
            self._sock = self._connect()
        self._sock.sendall(b"".join(syslog_frame(self.app, line) for line in batch))

    def _post(self, batch: list[LogLine]) -> None:
        parts = urlsplit(self.target.url)
        conn = _CheckedHTTPS(self)
        try:
            headers = {"Content-Type": "application/logplex-1",
                       "Logplex-Msg-Count": str(len(batch)), "User-Agent": "shipway-drain"}
            if parts.username:
                import base64
                pair = f"{parts.username}:{parts.password or ''}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request("POST", path, b"".join(syslog_frame(self.app, line) for line in batch),
                         headers)
            response = conn.getresponse()
            response.read(65536)
            if not 200 <= response.status < 300:
                raise http.client.HTTPException(f"HTTP {response.status}")
        finally:
            conn.close()

    def _close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


class _CheckedHTTPS(http.client.HTTPSConnection):
    """HTTPS to the address the rule checked, verified for the URL's host."""

    def __init__(self, drain: Drain) -> None:
        super().__init__(drain.target.host, drain.target.port, timeout=IO_TIMEOUT,
                         context=drain.context)
        self._drain = drain

    def connect(self) -> None:
        self.sock = self._drain._connect()


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:300]


def tls_context(ca_bundle: str = "") -> ssl.SSLContext:
    """The system's trust store, plus `ca_bundle` (a PEM file) when set."""
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context


class DrainHub:
    """Every app's drains, fed by the log store's tap."""

    def __init__(self, rules: GuardRules, context: ssl.SSLContext,
                 buffer_lines: int = 100_000) -> None:
        self.rules, self.context, self.buffer_lines = rules, context, buffer_lines
        self._drains: dict[str, dict[int, Drain]] = {}
        self._lock = threading.Lock()

    def tap(self, app: str, lines: list[LogLine]) -> None:
        drains = self._drains.get(app)
        if drains:
            for drain in list(drains.values()):
                drain.put(lines)

    def set(self, app: str, rows: list[tuple[int, str]]) -> None:
        """The app's drains are now `rows` (id, url): new ones start, gone
        ones stop, kept ones keep their counters."""
        with self._lock:
            current = dict(self._drains.get(app, {}))
            wanted = {drain_id: url for drain_id, url in rows}
            for drain_id in set(current) - set(wanted):
                current.pop(drain_id).stop()
            for drain_id, url in wanted.items():
                if drain_id not in current:
                    current[drain_id] = Drain(drain_id, app, parse_drain_url(url), self.rules,
                                              self.context, self.buffer_lines)
            self._drains[app] = current

    def status(self, app: str) -> dict[int, dict[str, Any]]:
        return {i: d.status() for i, d in self._drains.get(app, {}).items()}

    def stop(self) -> None:
        with self._lock:
            for drains in self._drains.values():
                for drain in drains.values():
                    drain.stop()
            self._drains.clear()


def check_reachable(target: DrainTarget, rules: GuardRules,
                    resolve: Callable[..., list] = resolve_checked) -> None:
    """Refuse a drain whose host the fetch rule forbids (said when it is added;
    checked again at every connect)."""
    try:
        resolve(target.host, target.port, rules)
    except Refused as exc:
        raise BadDrain(str(exc)) from None
