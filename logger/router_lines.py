"""The router's access line for each request, in the app's logs as Heroku's
router lines: `shipway[router]: at=info method=GET path="/" status=200
bytes=73 connect=1ms service=12ms fwd="1.2.3.4"`.

HAProxy formats each request's line (router/haproxy_conf.py: `log-format`
with the backend, method, path, status, bytes, total and connect times,
client) into an in-memory ring and forwards the ring over one stream
connection, octet counted (`LEN SP LINE`, RFC 6587), to a unix socket in
Linux's abstract namespace named for the router's directory (any local user
could connect to it, as to a TCP port on 127.0.0.1). This reader listens
there and turns each line into one line of the app the backend serves.
HAProxy never waits for it: while it is slow or absent the ring (1 MB)
keeps the newest lines and forwards them once it reads again. A datagram per
line cost HAProxy a send and a wake-up of this thread per request and lost
lines past the socket's 512-datagram queue. The host is not in the line:
HAProxy 2.6 cannot log a request header without a capture declared in the
frontend.
"""
from __future__ import annotations

import re
import socket
import threading
from typing import Callable

from logger.store import LogStore

# `shipway-access BACKEND METHOD "PATH" STATUS BYTES Ta Tc CLIENT`
_LINE = re.compile(r'shipway-access (\S+) (\S+) "((?:[^"\\]|\\.)*)" (-?\d+) (\d+) '
                   r'(-?\d+) (-?\d+) (\S+)')


def router_line(raw: bytes) -> tuple[str, str] | None:
    """(backend, Heroku-style text) of one HAProxy access line, or None."""
    text = raw.decode("utf-8", "replace").strip()
    match = _LINE.search(text)
    if match is None:
        return None
    backend, method, path, status, size, total, connect, client = match.groups()
    at = "error" if status.startswith("5") or status == "-1" else "info"
    connect_ms = max(int(connect), 0)
    return backend, (f'at={at} method={method} path="{path[:2000]}" status={status} '
                     f'bytes={size} connect={connect_ms}ms service={max(int(total), 0)}ms '
                     f'fwd="{client}"')


def octet_frames(buffer: bytearray) -> list[bytes]:
    """Takes the complete `LEN SP MESSAGE` frames off the front of `buffer`
    (what is left is the start of the next frame). Raises ValueError on a
    stream that is not octet counted."""
    frames, pos = [], 0
    while True:
        space = buffer.find(b" ", pos, pos + 12)
        if space < 0:
            if len(buffer) - pos >= 12:
                raise ValueError("not an octet-counted stream")
            break
        size = int(buffer[pos:space])
        if len(buffer) < space + 1 + size:
            break
        frames.append(bytes(buffer[space + 1:space + 1 + size]))
        pos = space + 1 + size
    del buffer[:pos]
    return frames


class RouterLogReceiver:
    """Reads HAProxy's access datagrams on its own thread (never the reactor)."""

    def __init__(self, path: str, store: LogStore,
                 app_for_backend: Callable[[str], str | None]) -> None:
        self.path, self.store, self.app_for_backend = path, store, app_for_backend
        self._sock: socket.socket | None = None
        self.unparsed = 0

    def start(self) -> None:
        # HAProxy's `abns@NAME`: Linux's abstract namespace, the name padded
        # with NULs to the whole address (as HAProxy connects to it). No file:
        # HAProxy's workers (nobody) reach it without a way into the data dir.
        name = self.path.encode()
        if len(name) > 107:
            raise OSError(f"router log socket name too long: {self.path}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(b"\0" + name + b"\0" * (107 - len(name)))
        sock.listen(8)
        self._sock = sock
        threading.Thread(target=self._accept, name="logs-router", daemon=True).start()

    def stop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        # One connection per HAProxy worker (two for a while after a settings
        # reload: the old worker's and the new one's).
        while self._sock is not None:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), name="logs-router-conn",
                             daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buffer = bytearray()
        with conn:
            while self._sock is not None:
                try:
                    chunk = conn.recv(1 << 16)
                    if not chunk:
                        return
                    buffer += chunk
                    frames = octet_frames(buffer)
                except (OSError, ValueError):
                    return
                for frame in frames:
                    self._add(frame)

    def _add(self, frame: bytes) -> None:
        parsed = router_line(frame)
        app = self.app_for_backend(parsed[0]) if parsed else None
        if parsed is None or app is None:
            self.unparsed += 1
            return
        self.store.add(app, "shipway", "router", parsed[1])
