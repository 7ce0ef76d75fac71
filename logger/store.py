"""The app's logs: every line kept durably per app, bounded in bytes, with
live subscribers.

Sources are named as Heroku names them: `app[web.3f2a1c]`, `shipway[build]`,
`shipway[deploy]`, `shipway[release]`, `shipway[router]` (an access line per
request). `add()`/`add_many()` never block on disk or a follower: they queue
(past `max_pending_bytes` a line is dropped, counted in `dropped`). A
fan-out thread hands each batch to subscribers and drains at once; a disk
thread then writes it to SQLite in one transaction, apart so a follower
never waits for a commit (under a burst that was most of a line's latency).

Why SQLite rather than a ring of segment files: one batched transaction per
flush is crash-safe (WAL), `tail -n N --source X` is one indexed query, and
trimming an app back under its budget is one DELETE; a segment ring would
need its own index, framing and recovery for the same. The file is
`logs.sqlite3` under the data dir, apart from the controller's database so
a log flood never contends with its writes.
"""
from __future__ import annotations

import datetime as dt
import secrets
import sqlite3
import threading
import time
from collections import deque
from contextlib import closing
from itertools import chain
from pathlib import Path
from typing import Any, Callable, Iterable

from twisted.logger import Logger

from logger.lines import MAX_LINE, TRUNCATED, LogLine, clip, stamp_of

__all__ = ["MAX_LINE", "TRUNCATED", "LogLine", "LogStore", "Subscriber", "clip"]

DISK_DELAY = 1.0  # seconds a line may wait for the disk while followers are served
log = Logger()
Subscriber = Callable[[LogLine], None]
Batches = Callable[[list[LogLine]], None]  # an app's lines of one fan-out batch

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lines (
    seq INTEGER PRIMARY KEY, app TEXT NOT NULL, at TEXT NOT NULL,
    source TEXT NOT NULL, process TEXT NOT NULL, text TEXT NOT NULL,
    size INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS lines_app ON lines (app, seq);
"""
_INSERT = "INSERT OR REPLACE INTO lines VALUES (?, ?, ?, ?, ?, ?, ?)"
ROWS = 128  # 896 bound values per statement (SQLite's limit: 32,766)
_INSERT_ROWS = _INSERT + ", (?, ?, ?, ?, ?, ?, ?)" * (ROWS - 1)


class LogStore:
    """History (SQLite at `path`, memory if None), subscribers; `tail` <= lines_per_app."""

    def __init__(self, path: Path | None = None, *, bytes_per_app: int = 10 << 20,
                 lines_per_app: int = 1500, subscribers_per_app: int = 1000,
                 max_pending_bytes: int = 32 << 20, batch: int = 5000) -> None:
        self.path = path
        self.bytes_per_app = bytes_per_app
        self.lines_per_app = lines_per_app
        self.subscribers_per_app = subscribers_per_app
        self.max_pending_bytes = max_pending_bytes
        self.batch = batch
        self.dropped = 0  # lines refused because the writer fell behind
        self.failures: dict[str, int] = {}  # batches a drain or follower raised on
        self.drains: Any = None  # controller.drains.Drains, wired by server/main.py
        self._pending: deque[tuple[str, LogLine]] = deque()  # for the fan-out
        self._unwritten: deque[tuple[str, LogLine]] = deque()  # fanned out, for the disk
        # The batches the disk thread and the fan-out hold (in no queue): `tail` shows them.
        self._writing: list[tuple[str, LogLine]] = []
        self._fanning: list[tuple[str, LogLine]] = []
        self._unwritten_bytes = 0
        self._unwritten_since = 0.0  # when the disk thread last found it empty or wrote
        self._pending_bytes = 0  # of both queues: the bound covers both
        self._subscribers: dict[str, list[Batches]] = {}
        self._taps: list[Callable[[str, list[LogLine]], None]] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._wake_disk = threading.Condition(self._lock)
        self._written = threading.Condition(self._lock)
        self._stopping = False
        self._fanned_out = True  # the fan-out thread has nothing in hand
        self._memory: dict[str, deque[LogLine]] = {}  # path None: the history
        self._sizes: dict[str, int] = {}
        self._seq = 0
        self._db: sqlite3.Connection | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._connect()
            self._db.executescript(_SCHEMA)
            self._seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM lines").fetchone()[0]
            self._sizes = dict(self._db.execute(
                "SELECT app, SUM(size) FROM lines GROUP BY app").fetchall())
        self._done = self._seq  # the newest line written and handed on
        self._threads = [
            threading.Thread(target=self._run, name="logs-fanout", daemon=True),
            threading.Thread(target=self._run_disk, name="logs-writer", daemon=True)]
        for thread in self._threads:
            thread.start()

    def _connect(self) -> sqlite3.Connection:
        assert self.path is not None
        db = sqlite3.connect(self.path, check_same_thread=False, timeout=30,
                             isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    # --- writing ------------------------------------------------------------------
    def add(self, app: str, source: str, process: str, text: str,
            at: dt.datetime | None = None) -> None:
        """Queue one line; never waits (a full queue drops and counts it)."""
        self.add_many(app, source, process, [(at, text)])

    def add_many(self, app: str, source: str, process: str,
                 items: Iterable[tuple[dt.datetime | None, str]],
                 stamps: list[str] | None = None) -> None:
        """Queue the lines of one read (one lock, one wake-up for them all);
        `stamps`: each line's `LogLine.stamp()` if known ("" if not)."""
        now = dt.datetime.now(dt.timezone.utc)
        now_stamp = stamp_of(now)
        clipped = [(at, clip(text)) for at, text in items]
        # Each line's stamp made here once (the disk needs it for every line).
        if stamps is None or len(stamps) != len(clipped):  # never a line lost to zip
            stamps = [""] * len(clipped)
        stamps = [(stamp or stamp_of(at)) if at else now_stamp
                  for (at, _), stamp in zip(clipped, stamps)]
        with self._lock:
            was_empty = not self._pending
            for (at, text), stamp in zip(clipped, stamps):
                if self._pending_bytes + len(text) > self.max_pending_bytes:
                    self.dropped += 1
                    continue
                self._seq += 1
                self._pending.append((app, LogLine(at or now, source, process, text,
                                                   self._seq, stamp)))
                self._pending_bytes += len(text)
            if was_empty and self._pending:
                self._wake.notify()

    def writer(self, app: str, source: str, process: str) -> Callable[[str], None]:
        """An `output`-style callable that adds each line it is given."""
        return lambda text: self.add(app, source, process, text)

    def oneoff_writer(self, app: str, kind: str,
                      also: Callable[[str], None] | None = None) -> Callable[[str], None]:
        """A one-off's lines (`run`, `release`, `migrate`) as Heroku names
        them, `app[run.2741]`: its own process, numbered at random since it
        has no replica slot. Each line also goes to `also` (the caller)."""
        record = self.writer(app, "app", f"{kind}.{secrets.randbelow(9000) + 1000}")
        if also is None:
            return record

        def both(text: str) -> None:
            record(text)
            also(text)

        return both

    def _run(self) -> None:
        """The fan-out: every queued line to the drains and followers, at
        once, then on to the disk thread."""
        while True:
            with self._lock:
                while not self._pending and not self._stopping:
                    self._wake.wait()
                if not self._pending and self._stopping:
                    self._wake_disk.notify()
                    return
                batch = self._fanning = list(self._pending)
                self._pending.clear()
                self._fanned_out = False
                subscribers = {app: list(subs) for app, subs in self._subscribers.items()}
                taps = list(self._taps)
            by_app: dict[str, list[LogLine]] = {}
            for app, line in batch:
                by_app.setdefault(app, []).append(line)
            for app, lines in by_app.items():
                for tap in taps:  # a whole batch per call: one lock per drain
                    try:
                        tap(app, lines)
                    except Exception:  # noqa: BLE001 (a failing drain: not the others)
                        self._failed("drain")
                for subscriber in subscribers.get(app, ()):
                    try:  # one call per follower per batch, the same list for all
                        subscriber(lines)
                    except Exception:  # noqa: BLE001 (a failing follower: not the others)
                        self._failed("follower")
            with self._lock:
                self._unwritten.extend(batch)
                self._fanning = []
                self._unwritten_bytes += sum(len(line.text) for _, line in batch)
                self._fanned_out = True
                self._wake_disk.notify()

    def _failed(self, what: str) -> None:
        """A failing drain or follower loses its batch, never the others';
        counted in `failures` and logged the first time, so it is not silent."""
        self.failures[what] = self.failures.get(what, 0) + 1
        if self.failures[what] == 1:
            log.failure("logs: a {what} failed on a batch (counted from now on)", what=what)

    def _disk_may_write(self) -> bool:
        """Followers first: under a burst the disk thread waits while the
        fan-out has lines in hand (its SQLite work would hold the GIL from
        them), unless a quarter of the queue bound or DISK_DELAY has built
        up. Called with the lock held."""
        if not self._unwritten:
            return False
        if self._stopping or (not self._pending and self._fanned_out):
            return True
        return (self._unwritten_bytes >= self.max_pending_bytes // 4
                or time.monotonic() - self._unwritten_since >= DISK_DELAY)

    def _run_disk(self) -> None:
        while True:
            with self._lock:
                while not self._disk_may_write():
                    if self._stopping and not self._pending and self._fanned_out:
                        return
                    if not self._unwritten:
                        self._wake_disk.wait()
                        self._unwritten_since = time.monotonic()
                    else:
                        self._wake_disk.wait(DISK_DELAY / 4)
                count = min(len(self._unwritten), self.batch)
                batch = self._writing = [self._unwritten.popleft() for _ in range(count)]
                self._unwritten_bytes -= sum(len(line.text) for _, line in batch)
                self._unwritten_since = time.monotonic()
            try:
                self._keep(batch)
                lost = 0
            except sqlite3.Error:  # a full disk: the lines were delivered live at least
                lost = len(batch)
            with self._lock:
                self.dropped += lost
                self._pending_bytes -= sum(len(line.text) for _, line in batch)
                self._done, self._writing = batch[-1][1].seq, []
                self._written.notify_all()

    def _keep(self, batch: list[tuple[str, LogLine]]) -> None:
        if self._db is None:
            for app, line in batch:
                self._memory.setdefault(app, deque(maxlen=self.lines_per_app)).append(line)
            return
        rows = [(line.seq, app, line.stamp(), line.source, line.process, line.text,
                 (len(line.text) if line.text.isascii()
                  else len(line.text.encode("utf-8", "replace"))) + 64)
                for app, line in batch]
        db = self._db
        db.execute("BEGIN")
        try:
            self._insert(db, rows)
        except sqlite3.Error:
            # Left open, the transaction would make every later BEGIN fail
            # (every later batch lost): undo it, this batch alone is lost.
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _insert(self, db: sqlite3.Connection, rows: list[tuple]) -> None:
        # ROWS rows per INSERT: SQLite's per-statement work is paid once for
        # them (executemany, one step per row, was ~2.7 µs a line with the
        # rows made, the disk thread's most; this is ~1.6).
        full = len(rows) - len(rows) % ROWS
        for at in range(0, full, ROWS):
            db.execute(_INSERT_ROWS, list(chain.from_iterable(rows[at:at + ROWS])))
        db.executemany(_INSERT, rows[full:])
        for row in rows:
            self._sizes[row[1]] = self._sizes.get(row[1], 0) + row[6]
        for app in {row[1] for row in rows}:
            if self._sizes[app] > self.bytes_per_app:
                self._trim(db, app)
        db.execute("COMMIT")

    def _trim(self, db: sqlite3.Connection, app: str) -> None:
        """Drop the oldest lines until the app is at 90% of its budget (so
        a busy app trims once per tenth of its budget, not per batch)."""
        excess = self._sizes[app] - self.bytes_per_app * 9 // 10
        cut, freed = None, 0
        for seq, size in db.execute("SELECT seq, size FROM lines WHERE app = ? ORDER BY seq",
                                    (app,)):
            cut, freed = seq, freed + size
            if freed >= excess:
                break
        if cut is not None:
            db.execute("DELETE FROM lines WHERE app = ? AND seq <= ?", (app, cut))
            self._sizes[app] -= freed

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every line added so far is written (tests, shutdown)."""
        with self._lock:
            target = self._seq
            self._written.wait_for(lambda: self._done >= target or self._stopping, timeout)

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._stopping = True
            self._wake.notify()
            self._wake_disk.notify()
        for thread in self._threads:
            thread.join(10)
        if self._db is not None:
            self._db.close()

    # --- reading ------------------------------------------------------------------
    def tail(self, app: str, lines: int, source: str | None = None) -> list[LogLine]:
        """The newest `lines` lines (of `source` when given), oldest first,
        the ones still queued included. Reads the disk: call it off the reactor."""
        if lines <= 0:
            return []
        with self._lock:
            queued = [line for a, line in chain(self._writing, self._unwritten,
                                                self._fanning, self._pending)
                      if a == app and line.matches(source)]
            kept = [line for line in self._memory.get(app, ()) if line.matches(source)]
        if self.path is not None:
            kept = self._query(app, lines, source)
        seen = {line.seq for line in kept}
        return (kept + [line for line in queued if line.seq not in seen])[-lines:]

    def _query(self, app: str, lines: int, source: str | None) -> list[LogLine]:
        sql = "SELECT seq, at, source, process, text FROM lines WHERE app = ?"
        args: list[object] = [app]
        if source is not None:
            sql += (" AND (source = ? OR process = ? OR"
                    " substr(process, 1, length(?) + 1) = ? || '.')")
            args += [source] * 4
        with closing(self._connect()) as db:
            rows = db.execute(sql + " ORDER BY seq DESC LIMIT ?", [*args, lines]).fetchall()
        return [LogLine(dt.datetime.fromisoformat(at), src, proc, text, seq, at)
                for seq, at, src, proc, text in reversed(rows)]

    def last_at(self, app: str, process: str) -> dt.datetime | None:
        """When the newest stored line of one process was written (a restarted
        server follows each container on from there, not from its start)."""
        if self.path is None:
            return None
        with closing(self._connect()) as db:
            row = db.execute("SELECT at FROM lines WHERE app = ? AND process = ?"
                             " ORDER BY seq DESC LIMIT 1", (app, process)).fetchone()
        return dt.datetime.fromisoformat(row[0]) if row else None

    def subscribe(self, app: str, subscriber: Subscriber | Batches, *,
                  batches: bool = False) -> Callable[[], None]:
        """Call `subscriber` (on the fan-out thread; it must not block) with
        every new line of `app`, or with `batches` with each batch's list of
        them, oldest first: the same list for every follower, not to be
        changed (one call a batch, not one a line: under a burst the calls
        per line per follower were most of a follower's CPU). Returns the
        function that stops it. Refuses (ValueError) past the per-app cap."""
        each: Batches = (subscriber if batches  # type: ignore[assignment]
                         else lambda lines: _each(subscriber, lines))  # type: ignore[arg-type]
        with self._lock:
            followers = self._subscribers.setdefault(app, [])
            if len(followers) >= self.subscribers_per_app:
                raise ValueError(f"{app} already has {len(followers)} log followers")
            followers.append(each)

        def unsubscribe() -> None:
            with self._lock:
                if each in self._subscribers.get(app, []):
                    self._subscribers[app].remove(each)

        return unsubscribe

    def tap(self, tap: Callable[[str, list[LogLine]], None]) -> None:
        """Every line of every app (the drains), called with an app's lines
        of one batch, oldest first; uncapped, same thread rules."""
        with self._lock:
            self._taps.append(tap)

    def drop(self, app: str) -> None:
        """Forget a destroyed app's history (its followers stay until they leave)."""
        with self._lock:
            self._memory.pop(app, None)
            self._sizes.pop(app, None)
        if self.path is not None:
            with closing(self._connect()) as db:
                db.execute("DELETE FROM lines WHERE app = ?", (app,))


def _each(subscriber: Subscriber, lines: list[LogLine]) -> None:
    """Every line to one subscriber; one that fails on a line is still
    given the others (without a wrapper call per line per follower)."""
    at = 0
    while at < len(lines):
        try:
            for line in lines[at:]:
                at += 1
                subscriber(line)
        except Exception:  # noqa: BLE001 (a failing follower must not stop the fan-out)
            pass
