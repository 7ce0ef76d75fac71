"""A small HTTP/1.1 load generator for the deploy benchmarks (no ab or wrk on
a fresh machine): asyncio clients on raw sockets, keep-alive or a new
connection per request, bounded by time and by request count, loopback only.

A request that fails on a *reused* keep-alive connection before a single
byte of the answer arrived is retried once on a new connection, as browsers
and HTTP libraries do (RFC 9112 §9.3.1 allows it for idempotent requests);
such retries are counted and reported, never hidden.
"""
from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections import Counter
from typing import Any

import attrs

MAX_SECONDS = 600.0
MAX_REQUESTS = 2_000_000


class _Closed(Exception):
    """The server closed a connection before answering."""


@attrs.define
class Stats:
    sent: int = 0
    ok: int = 0
    failed: int = 0
    retried: int = 0
    latencies: list[float] = attrs.field(factory=list)
    errors: Counter = attrs.field(factory=Counter)
    bodies: Counter = attrs.field(factory=Counter)  # starts of 200 answers
    elapsed: float = 0.0

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        pick = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000) if lat else (lambda q: 0.0)
        return {
            "sent": self.sent, "ok": self.ok, "failed": self.failed,
            "retried_keepalive": self.retried,
            "rps": round(self.ok / self.elapsed, 1) if self.elapsed else 0.0,
            "mean_ms": round(statistics.fmean(lat) * 1000, 3) if lat else 0.0,
            "p50_ms": round(pick(0.5), 3), "p99_ms": round(pick(0.99), 3),
            "errors": dict(self.errors.most_common(5)),
        }


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, server closes) of one HTTP/1.x response."""
    status_line = await reader.readline()
    if not status_line:
        raise _Closed()
    parts = status_line.split(None, 2)
    status = int(parts[1])
    close = parts[0] == b"HTTP/1.0"
    length: int | None = None
    chunked = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value:
            chunked = True
        elif name == b"connection":
            close = value == b"close" or (close and value != b"keep-alive")
    if chunked:
        body = b""
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            body += await reader.readexactly(size)
            await reader.readline()
    elif length is not None:
        body = await reader.readexactly(length)
    else:
        body = await reader.read()
        close = True
    return status, body, close


async def _client(host: str, port: int, hostname: str, path: str, keepalive: bool,
                  pause: float, deadline: float, stop: threading.Event, stats: Stats,
                  max_requests: int) -> None:
    request = (f"GET {path} HTTP/1.1\r\nHost: {hostname}\r\nUser-Agent: shipway-bench\r\n"
               f"Connection: {'keep-alive' if keepalive else 'close'}\r\n\r\n").encode()
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while not stop.is_set() and time.monotonic() < deadline and stats.sent < max_requests:
        stats.sent += 1
        started = time.perf_counter()
        for attempt in (1, 2):
            if conn is not None and conn[0].at_eof():
                # The server closed this idle connection (as nginx does on a
                # reload): like urllib3, notice it before reuse and reconnect.
                _drop(conn)
                conn = None
            reused = conn is not None
            try:
                if conn is None:
                    conn = await asyncio.open_connection(host, port)
                reader, writer = conn
                writer.write(request)
                await writer.drain()
                status, body, close = await asyncio.wait_for(_read_response(reader), 30)
            except (_Closed, ConnectionResetError, BrokenPipeError) as exc:
                _drop(conn)
                conn = None
                if reused and attempt == 1:
                    stats.retried += 1
                    continue
                stats.failed += 1
                stats.errors[type(exc).__name__] += 1
                break
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                _drop(conn)
                conn = None
                stats.failed += 1
                stats.errors[type(exc).__name__] += 1
                break
            stats.latencies.append(time.perf_counter() - started)
            if status == 200:
                stats.ok += 1
                stats.bodies[body[:80].decode(errors="replace").strip()] += 1
            else:
                stats.failed += 1
                stats.errors[f"HTTP {status}"] += 1
            if close or not keepalive:
                _drop(conn)
                conn = None
            break
        if pause:
            await asyncio.sleep(pause)
    _drop(conn)


def _drop(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
    if conn is not None:
        conn[1].close()


def run_load(host: str, port: int, hostname: str, *, connections: int, seconds: float,
             keepalive: bool = True, path: str = "/", pause: float = 0.0,
             max_requests: int = MAX_REQUESTS, stop: threading.Event | None = None) -> Stats:
    """Run `connections` clients for `seconds` (both bounded); blocking."""
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError("load is only ever sent to the loopback interface")
    stop = stop or threading.Event()
    stats = Stats()
    seconds = min(seconds, MAX_SECONDS)
    max_requests = min(max_requests, MAX_REQUESTS)

    async def main() -> None:
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(_client(host, port, hostname, path, keepalive, pause, deadline,
                                       stop, stats, max_requests) for _ in range(connections)))

    started = time.monotonic()
    asyncio.run(main())
    stats.elapsed = time.monotonic() - started
    return stats


class BackgroundLoad:
    """`run_load` mixes in a thread: keep-alive and new-connection clients,
    started with `with`, stopped at the end of the block."""

    def __init__(self, host: str, port: int, hostname: str, *, keepalive_clients: int = 4,
                 new_connection_clients: int = 4, pause: float = 0.01,
                 max_seconds: float = 300, max_requests: int = 200_000) -> None:
        self._stop = threading.Event()
        self.keepalive = Stats()
        self.fresh = Stats()
        self._threads = [
            threading.Thread(target=self._run, args=(kind, clients), daemon=True)
            for kind, clients in (("keepalive", keepalive_clients), ("fresh", new_connection_clients))
            if clients
        ]
        self._args = dict(host=host, port=port, hostname=hostname, pause=pause,
                          seconds=max_seconds, max_requests=max_requests // 2)

    def _run(self, kind: str, clients: int) -> None:
        stats = run_load(connections=clients, keepalive=(kind == "keepalive"), stop=self._stop,
                         **self._args)
        setattr(self, kind, stats)

    def __enter__(self) -> "BackgroundLoad":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    @property
    def sent(self) -> int:
        return self.keepalive.sent + self.fresh.sent

    @property
    def failed(self) -> int:
        return self.keepalive.failed + self.fresh.failed
