"""The router's access line for each request, in the app's logs as Heroku's
router lines: `shipway[router]: at=info method=GET path="/" status=200
bytes=73 connect=1ms service=12ms fwd="1.2.3.4"`.

HAProxy formats each request's line (router/haproxy_conf.py: `log-format`
with the backend, method, path, status, bytes, total and connect times,
client) into an in-memory ring, and this reader pulls the ring over
HAProxy's admin socket: one connection, `show events shipway_access -w`,
which streams each new line as it is written (one per `\n`). Nothing is
pushed to the logger, so a stopped or restarting logger costs HAProxy
nothing: the ring's own forwarder (`server` in the ring) reconnected in a
tight loop while nobody listened (~4,700 failed connects and up to half a
core a second). HAProxy never waits for this reader: a line that finds the
ring full while the reader lags is dropped. A datagram per line cost
HAProxy a send and a wake-up of this thread per request and lost lines past
the socket's 512-datagram queue (router/README.md). The host is not in the
line: HAProxy 2.6 cannot log a request header without a capture declared
in the frontend.

A `-w` session keeps its worker alive: a worker that soft-stops (a settings
reload, `HAProxyProcess.stop`) writes `Proxy NAME stopped` lines into its
ring first, and on the first of them this reader hangs up and connects to
the socket again, which the new worker (if any) now answers. It also asks
`show info` for the worker's pid when the stream is quiet, in case a stop
line was lost.
"""
from __future__ import annotations

import re
import socket
import threading
import time
from typing import Callable

from twisted.logger import Logger

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


RING = "shipway_access"
_STOPPING = re.compile(rb"^Proxy \S+ stopped \(")
QUIET = 2.0  # seconds without a line before the worker's pid is checked
BACKOFF_MAX = 5.0
log = Logger()
BATCH, PAUSE = 32768, 0.02  # under load, read in batches (see _session)


def _worker_pid(answer: bytes) -> str | None:
    match = re.search(rb"^Pid: (\d+)", answer, re.M)
    return match.group(1).decode() if match else None


class RouterLogReceiver:
    """Pulls HAProxy's access lines on its own thread (never the reactor)."""

    def __init__(self, admin_socket: str, store: LogStore,
                 app_for_backend: Callable[[str], str | None]) -> None:
        self.admin_socket, self.store, self.app_for_backend = admin_socket, store, app_for_backend
        self._stopped = threading.Event()
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self.unparsed = 0
        self.lines = 0  # lines handed to the store (bench/router_overhead.py counts them)
        self.sessions = 0  # `show events` sessions answered (tests, diagnosis)

    def start(self) -> None:
        threading.Thread(target=self._run, name="logs-router", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _run(self) -> None:
        # A worker that started before this reader may hold lines that an
        # earlier run of this server read: its first session skips the ring
        # (`-n`), as does a new session with the same worker. A worker that
        # started since holds only lines nobody read: its ring is read whole,
        # so that no line is lost across a reload or a restart of HAProxy.
        backoff, last_pid, began = 0.1, None, time.monotonic()
        while not self._stopped.is_set():
            try:
                now, uptime = self._worker_now()
                fresh = uptime <= time.monotonic() - began and now != last_pid
                pid = self._session(skip_old=not fresh)
            except OSError:
                pid = None
            except Exception:  # noqa: BLE001 (a bug here must not end the router lines for good)
                log.failure("router lines: the reader failed; it starts a new session")
                pid = None
            if pid is not None:
                last_pid, backoff = pid, 0.1
            self._stopped.wait(backoff)  # HAProxy down or restarting: no spin
            backoff = min(BACKOFF_MAX, backoff * 2)

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(QUIET)
        try:
            sock.connect(self.admin_socket)
        except OSError:
            sock.close()
            raise
        return sock

    def _worker_now(self) -> tuple[str | None, float]:
        """The pid and uptime (s) of the worker answering the socket now."""
        with self._connect() as sock:
            sock.sendall(b"show info\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        answer = b"".join(chunks)
        uptime = re.search(rb"^Uptime_sec: (\d+)", answer, re.M)
        return _worker_pid(answer), float(uptime.group(1)) if uptime else 0.0

    def _session(self, skip_old: bool) -> str | None:
        """One `show events` session; returns the pid of the worker that
        answered it (None if it never did), when it ends."""
        sock = self._connect()
        with self._lock:
            if self._stopped.is_set():
                sock.close()
                return None
            self._sock = sock
        flags = " -w -n" if skip_old else " -w"
        pid, buffer = None, b""
        with sock:
            sock.sendall(f"show info; show events {RING}{flags}\n".encode())
            while not self._stopped.is_set():
                try:
                    chunk = sock.recv(1 << 16)
                except socket.timeout:
                    if pid is not None and self._worker_now()[0] != pid:
                        return pid  # a new worker took the socket over
                    continue
                if not chunk:
                    return pid
                buffer += chunk
                if pid is None:
                    # `show info`'s answer ends with an empty line.
                    head, sep, rest = buffer.partition(b"\n\n")
                    if not sep:
                        continue
                    pid, buffer = _worker_pid(head), rest
                    # Counted once HAProxy has answered the command line's
                    # first half: `show events` is next (tests wait on this).
                    self.sessions += 1
                *lines, buffer = buffer.split(b"\n")
                batch: dict[str, list[tuple[None, str]]] = {}
                try:
                    for line in lines:
                        if _STOPPING.match(line):
                            return pid  # this worker is stopping: find the next one
                        if line:
                            self._add(line, batch)
                finally:
                    self._hand_over(batch)
                if len(chunk) < BATCH:
                    # Let lines gather in the ring: HAProxy then writes them
                    # in larger chunks (fewer wake-ups on both sides).
                    self._stopped.wait(PAUSE)
        return pid

    def _add(self, line: bytes, batch: dict[str, list[tuple[None, str]]]) -> None:
        parsed = router_line(line)
        app = self.app_for_backend(parsed[0]) if parsed else None
        if parsed is None or app is None:
            self.unparsed += 1
            return
        batch.setdefault(app, []).append((None, parsed[1]))

    def _hand_over(self, batch: dict[str, list[tuple[None, str]]]) -> None:
        """One read's lines, one `add_many` per app (one lock and one wake-up
        of the store's threads per read, not per line)."""
        for app, items in batch.items():
            self.store.add_many(app, "shipway", "router", items)
            self.lines += len(items)
