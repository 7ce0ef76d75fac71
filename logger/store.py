"""A bounded history of log lines per app, with live subscribers.

Like Heroku's log router, this is a stream with a short memory (the last
`lines_per_app` lines), not an archive: an app that needs its logs kept
sends them somewhere durable itself. Lines come from three sources, named
as Heroku names them: `app[web.3f2a1c]` (a replica's stdout/stderr),
`shipway[build]` (a push's build output) and `shipway[deploy]` (deploys,
restarts, scaling). Subscribers (`shipway logs -f`) get each new line as it
is added, on the adder's thread; they must not block.
"""
from __future__ import annotations

import datetime as dt
import threading
from collections import deque
from typing import Callable

import attrs

MAX_LINE = 10_000  # characters kept of one line


@attrs.frozen
class LogLine:
    at: dt.datetime
    source: str  # "app" or "shipway"
    process: str  # "web.3f2a1c", "build", "deploy"
    text: str

    def format(self) -> str:
        stamp = self.at.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")
        return f"{stamp.replace('+00:00', 'Z')} {self.source}[{self.process}]: {self.text}"


Subscriber = Callable[[LogLine], None]


class LogStore:
    def __init__(self, lines_per_app: int = 1500, subscribers_per_app: int = 20) -> None:
        self.lines_per_app = lines_per_app
        self.subscribers_per_app = subscribers_per_app
        self._lines: dict[str, deque[LogLine]] = {}
        self._subscribers: dict[str, list[Subscriber]] = {}
        self._lock = threading.Lock()

    def add(self, app: str, source: str, process: str, text: str,
            at: dt.datetime | None = None) -> None:
        line = LogLine(at or dt.datetime.now(dt.timezone.utc), source, process,
                       text.rstrip("\r\n")[:MAX_LINE])
        with self._lock:
            self._lines.setdefault(app, deque(maxlen=self.lines_per_app)).append(line)
            subscribers = list(self._subscribers.get(app, ()))
        for subscriber in subscribers:
            subscriber(line)

    def tail(self, app: str, lines: int) -> list[LogLine]:
        """The newest `lines` lines, oldest first."""
        with self._lock:
            kept = list(self._lines.get(app, ()))
        return kept[-lines:] if lines > 0 else []

    def subscribe(self, app: str, subscriber: Subscriber) -> Callable[[], None]:
        """Call `subscriber` with every new line of `app`; returns the
        function that stops it. Refuses (ValueError) past the per-app cap,
        so followers cannot pile up without bound."""
        with self._lock:
            followers = self._subscribers.setdefault(app, [])
            if len(followers) >= self.subscribers_per_app:
                raise ValueError(f"{app} already has {len(followers)} log followers")
            followers.append(subscriber)

        def unsubscribe() -> None:
            with self._lock:
                if subscriber in self._subscribers.get(app, []):
                    self._subscribers[app].remove(subscriber)

        return unsubscribe

    def drop(self, app: str) -> None:
        """Forget a destroyed app's history (its followers stay until they leave)."""
        with self._lock:
            self._lines.pop(app, None)

    def writer(self, app: str, source: str, process: str) -> Callable[[str], None]:
        """An `output`-style callable that adds each line it is given."""
        return lambda text: self.add(app, source, process, text)


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
        with self._lock:
            pending, self._pending = list(self._pending), deque()
            self._sink = sink
        for line in pending:
            sink(line)
