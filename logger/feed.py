"""A `logs -f` follower's line queue between subscribing and sending."""
from __future__ import annotations

import threading
from collections import deque

from logger.store import LogLine, Subscriber


class LogFeed:
    """A follower's line queue: lines are kept from the moment it subscribes
    (so none is missed while the history is being sent), then handed to the
    sink once one is attached. Bounded: a follower that never attaches
    cannot hold more than `limit` lines."""

    def __init__(self, limit: int = 10_000) -> None:
        self._pending: deque[LogLine] = deque(maxlen=limit)
        self._sink: Subscriber | None = None
        self._lock = threading.Lock()

    def put(self, line: LogLine) -> None:
        with self._lock:
            sink = self._sink
            if sink is None:
                self._pending.append(line)
                return
        sink(line)

    def pending(self) -> list[LogLine]:
        with self._lock:
            return list(self._pending)

    def attach(self, sink: Subscriber) -> None:
        """The kept lines go to `sink` with the lock held: a line `put` on
        the fan-out thread meanwhile waits for them (at most `limit` lines),
        so it reaches the sink after them, never in between."""
        with self._lock:
            pending, self._pending = list(self._pending), deque()
            for line in pending:
                sink(line)
            self._sink = sink
