"""`logs -f` over the API: one streaming producer per follower.

The log store hands lines to every follower on its fan-out thread and must
never wait for one. A follower whose client stops reading would otherwise
have every line written into its Twisted transport, whose buffer grows
without bound. So each follower registers itself with its request as an
IPushProducer: when the transport's buffer is full Twisted pauses *this*
follower only; its lines then wait in its own bounded queue (other
followers, and the store, go on as before). Once the client reads again
(resumeProducing) the queue is sent in one write.

While paused, past `max_pending` queued bytes a line is dropped and counted
(the follower is told how many when it reads again). A follower that stays paused for
`max_paused` seconds, that is reads nothing at all for that long, is cut:
a last line says how many lines it missed and its connection is closed
(aborted if the client still does not read). Paused is the transport's
word for "more than 64 KiB not yet taken by the kernel": a client that
reads at all, however slowly, is resumed well within the bound, so only the
dead or stuck are cut, and a burst larger than the queue costs a slow
reader lines, never its connection.

Lines are coalesced (the fan-out thread appends to the queue and asks the
reactor for one flush per batch, not one reactor call and transport write
per line per follower; the flushes of all followers go in one reactor call)
and encoded once for all followers (`batch_ndjson`), a fan-out batch's
lines handed to each follower in one call.
"""
from __future__ import annotations

from json.encoder import encode_basestring_ascii as _quoted
import threading
from typing import Any, Callable

from twisted.internet import reactor
from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.logger import Logger
from twisted.web.server import Request
from zope.interface import implementer

from controller.api_views import Follow
from logger.store import LogLine

NDJSON = b"application/x-ndjson"
MAX_PENDING = 2 << 20  # bytes one follower may have queued
MAX_PAUSED = 10.0  # seconds a follower may read nothing
ABORT_AFTER = 10.0  # seconds a cut follower has to read its last line
log = Logger()


def ndjson(line: str) -> bytes:
    """`{"log": "..."}` and a newline, as json.dumps makes it (the C string
    encoder alone: a third of json.dumps' time, once per line of a burst)."""
    return b'{"log": ' + _quoted(line).encode("ascii") + b"}\n"


_last: tuple[list[LogLine] | None, list[bytes]] = (None, [])


def batch_ndjson(lines: list[LogLine]) -> list[bytes]:
    """A batch's stored lines as followers get them, made once per line:
    the store hands the same list to all of an app's followers one after
    the other on its fan-out thread, so remembering the last list (held, so
    its id is not reused) is enough."""
    global _last
    made, data = _last
    if made is not lines:
        # LogLine.format() inline, one str encoded once (~0.4 µs a line; ~0.6
        # with the two method calls and the bytes concatenations).
        texts = [f"{line.stamped or line.stamp()} {line.source}[{line.process}]: {line.text}"
                 for line in lines]
        data = [f'{{"log": {quoted}}}\n'.encode("ascii") for quoted in map(_quoted, texts)]
        _last = (lines, data)
    return data


@implementer(IPushProducer)
class FollowStream:
    """One follower's connection: see the module doc."""

    __slots__ = ("request", "finished", "follow", "max_pending", "max_paused", "clock",
                 "call_on_reactor", "_lock", "_queue", "_queued", "_dropped", "_scheduled",
                 "_paused", "_closed", "_timer")  # 1,000 followers: ~1 KiB less each

    def __init__(self, request: Request, finished: dict, follow: Follow, *,
                 max_pending: int = MAX_PENDING, max_paused: float = MAX_PAUSED,
                 clock: Any = reactor,
                 call_on_reactor: Callable[..., Any] | None = None) -> None:
        self.request, self.finished, self.follow = request, finished, follow
        self.max_pending, self.max_paused = max_pending, max_paused
        self.clock = clock
        self.call_on_reactor = call_on_reactor or _FLUSHES.call
        self._lock = threading.Lock()
        self._queue: list[bytes] = []
        self._queued = 0  # bytes in _queue
        self._dropped = 0  # lines not queued (queue full) since the last flush
        self._scheduled = False  # a flush is on its way to the reactor
        self._paused = False
        self._closed = False
        self._timer: IDelayedCall | None = None

    # --- on the reactor -------------------------------------------------------------
    def start(self) -> None:
        request = self.request
        if self.finished["gone"]:  # left while the history was read
            self.follow.stop()
            return
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", NDJSON)
        request.setHeader(b"Cache-Control", b"no-store")
        request.registerProducer(self, True)
        if self.follow.first:
            request.write(b"".join(ndjson(line) for line in self.follow.first))
        request.notifyFinish().addBoth(lambda _: self._close())
        self.follow.attach(self.put)

    def pauseProducing(self) -> None:
        with self._lock:
            self._paused = True
        if self._timer is None and not self._closed:
            self._timer = self.clock.callLater(self.max_paused, self._cut)

    def resumeProducing(self) -> None:
        with self._lock:
            self._paused = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._flush()

    def stopProducing(self) -> None:
        self._close()

    def _flush(self) -> None:
        with self._lock:
            self._scheduled = False
            if self._closed or self._paused:
                return
            queue, self._queue, self._queued = self._queue, [], 0
            dropped, self._dropped = self._dropped, 0
        if self.finished["gone"]:
            self._close()
            return
        if dropped:
            queue.append(ndjson(f"shipway: {dropped} lines dropped here: this follower "
                                f"read too slowly for them"))
        if queue:
            self.request.write(b"".join(queue))

    def _cut(self) -> None:
        """Disconnect a follower that reads nothing: a last line, then the
        connection is closed (aborted if even that is not read in time)."""
        self._timer = None
        with self._lock:
            if self._closed:
                return
            missed = self._dropped + len(self._queue)
        self._close()
        if self.finished["gone"]:
            return
        channel = self.request.channel
        transport = channel.transport if channel is not None else None
        self.request.write(ndjson(
            f"shipway: this follower read nothing for {self.max_paused:g} s and is "
            f"disconnected; {missed} lines dropped. Follow again to go on."))
        self.request.unregisterProducer()
        self.request.finish()
        if transport is not None:
            transport.loseConnection()
            self.clock.callLater(ABORT_AFTER, _abort, transport)

    def _close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue, self._queued = [], 0
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.follow.stop()

    # --- on the log store's fan-out thread --------------------------------------------
    def put(self, line: str | bytes | list[bytes]) -> None:
        """Queue one line (text, or NDJSON already) or a batch's lines
        (NDJSON already: one call and one lock a batch); never waits. A
        paused follower's line past `max_pending` is dropped and counted;
        one not paused keeps all (its flush is on the way: at most the
        store's batch waits here, shared with the other followers)."""
        if isinstance(line, list):
            batch, size = line, sum(map(len, line))
        else:
            data = line if isinstance(line, bytes) else ndjson(line)
            batch, size = [data], len(data)
        with self._lock:
            if self._closed:
                return
            if not self._paused or self._queued + size <= self.max_pending:
                self._queue += batch
                self._queued += size
            else:
                for data in batch:
                    if self._queued + len(data) > self.max_pending:
                        self._dropped += 1
                    else:
                        self._queue.append(data)
                        self._queued += len(data)
            if self._scheduled or self._paused:
                return
            self._scheduled = True
        self.call_on_reactor(self._flush)


class _Flushes:
    """The followers' flushes of one fan-out batch, handed to the reactor
    in one call: with a callFromThread per follower, each wrote the
    reactor's wake-up pipe (a syscall, and the GIL handed over and waited
    for again) 1,000 times per batch at 1,000 followers."""

    def __init__(self, call_from_thread: Callable[..., Any] | None = None) -> None:
        self._call_from_thread = call_from_thread
        self._lock = threading.Lock()
        self._due: list[Callable[[], None]] = []

    def call(self, flush: Callable[[], None]) -> None:
        with self._lock:
            self._due.append(flush)
            if len(self._due) > 1:  # the reactor call is on its way already
                return
        (self._call_from_thread or reactor.callFromThread)(self._run)

    def _run(self) -> None:
        with self._lock:
            due, self._due = self._due, []
        for flush in due:
            try:
                flush()
            except Exception:  # noqa: BLE001 (one follower's broken request: not the others')
                log.failure("logs -f: a follower's flush failed")


_FLUSHES = _Flushes()


def _abort(transport: Any) -> None:
    if getattr(transport, "connected", False):
        transport.abortConnection()
