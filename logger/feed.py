"""A `logs -f` follower's line queue between subscribing and sending."""
from __future__ import annotations

import bisect
import datetime as dt
from array import array
import threading
from collections import deque
from typing import Callable

from logger.store import LogLine

Sink = Callable[[list[LogLine]], None]
RECORDED = 10_000  # dropped line numbers kept to count them exactly (80 KB)


class LogFeed:
    """A follower's line queue: lines are kept from the moment it subscribes
    (so none is missed while the history is being sent), then handed to the
    sink once one is attached, a fan-out batch's lines in one call. Bounded:
    a follower that never attaches cannot hold more than `limit` lines; past
    it the oldest go, and the follower is told how many (as Heroku's
    "L11 tail buffer overflow"), not left to think it saw every line."""

    def __init__(self, limit: int = 10_000) -> None:
        self._pending: deque[LogLine] = deque(maxlen=limit)
        # Numbers of the lines that fell off: the oldest RECORDED of them
        # (8 bytes each), and how many newer ones. At the attach, those the
        # history already showed are not counted as lost; they are always
        # the oldest (they came between the subscription and the history's read).
        self._dropped = array("q")
        self._dropped_newer = 0
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
                pending = self._pending
                over = len(pending) + len(lines) - (pending.maxlen or 0)
                if over > 0:
                    self._note_dropped(over, lines)
                pending.extend(lines)
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
        raw, maxlen = sink, self._pending.maxlen
        if after:
            sink = _after(sink, after)
        while True:
            with self._lock:
                pending, self._pending = list(self._pending), deque(maxlen=maxlen)
                seqs, newer = self._dropped, self._dropped_newer
                self._dropped, self._dropped_newer = array("q"), 0
                if not pending:
                    self._sink = sink
                    return
            lost = _lost(seqs, newer, after)
            if lost:  # before the lines that came after them
                raw([LogLine(dt.datetime.now(dt.timezone.utc), "shipway", "logs",
                             f"{lost} line{'s' if lost > 1 else ''} dropped here: this "
                             f"follower fell more than {maxlen} lines behind")])
            sink(pending)

    def _note_dropped(self, over: int, lines: list[LogLine]) -> None:
        """Record the `over` oldest of the kept lines and `lines` (called
        with the lock held, before they are added)."""
        pending, dropped = self._pending, self._dropped
        room = min(over, RECORDED - len(dropped))
        for i in range(room):
            line = pending[i] if i < len(pending) else lines[i - len(pending)]
            dropped.append(line.seq)
        self._dropped_newer += over - room


def _lost(oldest: "array[int]", newer: int, after: int) -> int:
    """Dropped lines newer than the history's last: the ones the follower
    never sees. Exact unless every one of the `oldest` recorded is at or
    below `after` (more than RECORDED dropped lines came before the history was
    read): then all `newer` ones are counted, an upper bound."""
    return len(oldest) - bisect.bisect_right(oldest, after) + newer


def _after(sink: Sink, after: int) -> Sink:
    def newer(lines: list[LogLine]) -> None:
        if lines[0].seq <= after:  # a batch is in order: only its head may be old
            lines = [line for line in lines if line.seq > after]
            if not lines:
                return
        sink(lines)

    return newer
