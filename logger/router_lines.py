"""The router's access line for each request, in the app's logs as Heroku's
router lines: `shipway[router]: at=info method=GET path="/" status=200
bytes=73 connect=1ms service=12ms fwd="1.2.3.4"`.

HAProxy logs each request (router/haproxy_conf.py: `log-format` with the
backend, method, path, status, bytes and times) to a unix datagram socket
named for the router's directory (Linux's abstract namespace: any local
user could send to it, as to a UDP port on 127.0.0.1); this reader binds it and turns each datagram
into one line of the app the backend serves. Datagrams never block HAProxy:
when this reader is slow or absent, the kernel drops them (counted by
nobody; the socket's receive buffer is the bound). The host is not in the
line: HAProxy 2.6 cannot log a request header without a capture declared
in the frontend.
"""
from __future__ import annotations

import re
import socket
import threading
from typing import Callable

from logger.store import LogStore

# `shipway-access BACKEND METHOD "PATH" STATUS BYTES Ta Tw Tc Tr CLIENT`
_LINE = re.compile(r'shipway-access (\S+) (\S+) "((?:[^"\\]|\\.)*)" (-?\d+) (\d+) '
                   r'(-?\d+) (-?\d+) (-?\d+) (-?\d+) (\S+)')


def router_line(datagram: bytes) -> tuple[str, str] | None:
    """(backend, Heroku-style text) of one HAProxy access datagram, or None."""
    text = datagram.decode("utf-8", "replace").strip()
    match = _LINE.search(text)
    if match is None:
        return None
    backend, method, path, status, size, total, _wait, connect, _resp, client = match.groups()
    at = "error" if status.startswith("5") or status == "-1" else "info"
    connect_ms = max(int(connect), 0)
    return backend, (f'at={at} method={method} path="{path[:2000]}" status={status} '
                     f'bytes={size} connect={connect_ms}ms service={max(int(total), 0)}ms '
                     f'fwd="{client}"')


class RouterLogReceiver:
    """Reads HAProxy's access datagrams on its own thread (never the reactor)."""

    def __init__(self, path: str, store: LogStore,
                 app_for_backend: Callable[[str], str | None]) -> None:
        self.path, self.store, self.app_for_backend = path, store, app_for_backend
        self._sock: socket.socket | None = None
        self.unparsed = 0

    def start(self) -> None:
        # HAProxy's `abns@NAME`: Linux's abstract namespace, the name padded
        # with NULs to the whole address (as HAProxy sends to it). No file:
        # HAProxy's workers (nobody) reach it without a way into the data dir.
        name = self.path.encode()
        if len(name) > 107:
            raise OSError(f"router log socket name too long: {self.path}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(b"\0" + name + b"\0" * (107 - len(name)))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self._sock = sock
        threading.Thread(target=self._run, name="logs-router", daemon=True).start()

    def stop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _run(self) -> None:
        while self._sock is not None:
            try:
                datagram = self._sock.recv(16384)
            except OSError:
                return
            parsed = router_line(datagram)
            app = self.app_for_backend(parsed[0]) if parsed else None
            if parsed is None or app is None:
                self.unparsed += 1
                continue
            self.store.add(app, "shipway", "router", parsed[1])
