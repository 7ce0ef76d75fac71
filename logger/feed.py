"""A `logs -f` follower's line queue between subscribing and sending."""
from __future__ import annotations

import threading
from collections import deque
from typing import Callable

from logger.store import LogLine

Sink = Callable[[list[LogLine]], None]


class LogFeed:
    """A follower's line queue: lines are kept from the moment it subscribes
    (so none is missed while the history is being sent), then handed to the
    sink once one is attached, a fan-out batch's lines in one call. Bounded:
    a follower that never attaches cannot hold more than `limit` lines."""

    def __init__(self, limit: int = 10_000) -> None:
        self._pending: deque[LogLine] = deque(maxlen=limit)
        self._sink: Sink | None = None
        self._lock = threading.Lock()

    def put_many(self, lines: list[LogLine]) -> None:
        """The lines of one batch, oldest first (the list is passed on as
        is: the caller must not change it afterwards)."""
        if not lines:
            return
        with self._lock:
            sink = self._sink
            if sink is None:
                self._pending.extend(lines)
                return
        sink(lines)

    def put(self, line: LogLine) -> None:
        self.put_many([line])

    def pending(self) -> list[LogLine]:
        with self._lock:
            return list(self._pending)

    def attach(self, sink: Sink, after: int = 0) -> None:
        """The kept lines go to `sink` outside the lock, so the fan-out never
        waits for them (up to `limit` lines, on the reactor: tens of ms).
        A batch `put` meanwhile is kept and handed over after them, in
        turn, until none is left: only then does the fan-out call `sink`
        itself, so a line never overtakes an older one. Lines numbered
        `after` or lower, now or later, are left out: the history sent
        before them ended there (a line added while it was read is in both)."""
        if after:
            sink = _after(sink, after)
        while True:
            with self._lock:
                pending, self._pending = list(self._pending), deque(maxlen=self._pending.maxlen)
                if not pending:
                    self._sink = sink
                    return
            sink(pending)


def _after(sink: Sink, after: int) -> Sink:
    def newer(lines: list[LogLine]) -> None:
        if lines[0].seq <= after:  # a batch is in order: only its head may be old
            lines = [line for line in lines if line.seq > after]
            if not lines:
                return
        sink(lines)

    return newer
