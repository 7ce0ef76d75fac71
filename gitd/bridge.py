"""Blocking file-like ends for a worker thread, bridged to a Twisted
transport on the reactor thread, with flow control both ways.

The receive handler and pipeline block (dulwich, subprocesses, builds), so
they run in a thread; the transports (an SSH channel, an HTTP response) live
on the reactor. `ThreadInput` buffers what the reactor receives and pauses
the producer (the TCP connection) above a high-water mark; `ThreadOutput`
makes the worker wait while the consumer is paused or too much is queued, so
neither side grows without bound on a big pack.
"""
from __future__ import annotations

import collections
import threading
from typing import Callable

from twisted.internet import reactor

HIGH_WATER = 4 * 1024 * 1024
LOW_WATER = 1024 * 1024


class ThreadInput:
    """Reactor side: `feed(data)`, `feed_eof()`. Worker side: `read(n)`
    (exactly n bytes unless EOF, like a file) and `recv(n, timeout)`."""

    def __init__(self, pause: Callable[[], None] | None = None,
                 resume: Callable[[], None] | None = None) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._eof = False
        self._cond = threading.Condition()
        self._pause, self._resume = pause, resume
        self._paused = False
        self.total = 0  # bytes handed to the worker

    # reactor thread
    def feed(self, data: bytes) -> None:
        with self._cond:
            self._chunks.append(data)
            self._size += len(data)
            self._cond.notify_all()
            over = self._size > HIGH_WATER and not self._paused
            if over:
                self._paused = True
        if over and self._pause:
            self._pause()

    def feed_eof(self) -> None:
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    # worker thread
    def _take(self, n: int) -> bytes:
        out = []
        while n > 0 and self._chunks:
            chunk = self._chunks.popleft()
            if len(chunk) > n:
                self._chunks.appendleft(chunk[n:])
                chunk = chunk[:n]
            out.append(chunk)
            n -= len(chunk)
            self._size -= len(chunk)
        data = b"".join(out)
        self.total += len(data)
        if self._paused and self._size < LOW_WATER:
            self._paused = False
            if self._resume:
                reactor.callFromThread(self._resume)
        return data

    def recv(self, n: int, timeout: float | None = None) -> bytes:
        """Up to n bytes; b"" at EOF or when `timeout` passes with nothing."""
        with self._cond:
            if not self._chunks and not self._eof:
                self._cond.wait(timeout)
            return self._take(n)

    def read(self, n: int = -1) -> bytes:
        parts = []
        with self._cond:
            while n != 0:
                if not self._chunks:
                    if self._eof:
                        break
                    self._cond.wait()
                    continue
                part = self._take(n if n > 0 else self._size)
                parts.append(part)
                if n > 0:
                    n -= len(part)
        return b"".join(parts)

    @property
    def eof(self) -> bool:
        with self._cond:
            return self._eof and not self._chunks


class ThreadOutput:
    """Worker side: `write(data)` blocks while the consumer is paused or more
    than HIGH_WATER bytes are queued. Reactor side: the consumer registers
    this as a streaming producer (`pauseProducing`/`resumeProducing`)."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write
        self._cond = threading.Condition()
        self._pending = 0
        self._paused = False
        self.closed = False

    # worker thread
    def write(self, data: bytes) -> None:
        if not data:
            return
        with self._cond:
            while (self._paused or self._pending > HIGH_WATER) and not self.closed:
                self._cond.wait(1.0)
            if self.closed:
                raise BrokenPipeError("the client went away")
            self._pending += len(data)
        reactor.callFromThread(self._deliver, data)

    # reactor thread
    def _deliver(self, data: bytes) -> None:
        try:
            if not self.closed:
                self._write(data)
        finally:
            with self._cond:
                self._pending -= len(data)
                self._cond.notify_all()

    def pauseProducing(self) -> None:  # noqa: N802 (IPushProducer)
        with self._cond:
            self._paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def stopProducing(self) -> None:  # noqa: N802
        self.close()

    def close(self) -> None:
        """The consumer is gone: wake the worker so it fails fast."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()
