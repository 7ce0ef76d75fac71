"""controller/api_follow.py: one `logs -f` follower on Twisted's real HTTP
channel and request. The injected fault is the transport saying its buffer
is full (the channel's pauseProducing, what a client that stops reading
makes Twisted do); the clock is Twisted's test clock."""
from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web import http, server
from twisted.web.resource import Resource

from controller.api_follow import FollowStream
from controller.api_views import Follow


class Follower:
    """A follower on its own channel; `send` is the store handing it a line."""

    def __init__(self, clock: Clock, **limits: Any) -> None:
        self.channel = http.HTTPChannel()
        self.channel.site = server.Site(Resource())
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)
        request = server.Request(self.channel, False)
        request.method, request.clientproto, request.uri = b"GET", b"HTTP/1.1", b"/"
        request.path = b"/"
        self.channel.requests.append(request)
        self.stopped = 0
        self.sink: Callable[[str | bytes], None] | None = None

        def attach(sink: Callable[[str | bytes], None]) -> None:
            self.sink = sink

        def stop() -> None:
            self.stopped += 1

        self.stream = FollowStream(request, {"gone": False},
                                   Follow(first=["history"], attach=attach, stop=stop),
                                   clock=clock, call_on_reactor=lambda f: f(), **limits)
        self.stream.start()

    def send(self, text: str) -> None:
        assert self.sink is not None
        self.sink(text)

    def lines(self) -> list[str]:
        """The `log` of every NDJSON line the client got so far."""
        body = self.transport.value().split(b"\r\n\r\n", 1)[1]
        found = []
        for part in body.split(b"\r\n"):
            for raw in part.split(b"\n"):
                if raw.startswith(b"{"):
                    found.append(json.loads(raw)["log"])
        return found


def test_lines_flow_and_a_paused_follower_keeps_a_bounded_queue() -> None:
    clock = Clock()
    slow, other = Follower(clock, max_pending=1000), Follower(clock, max_pending=1000)
    slow.send("one")
    assert slow.lines() == ["history", "one"]

    slow.channel.pauseProducing()  # its client stopped reading
    for i in range(100):
        slow.send(f"line {i:03d} " + "x" * 40)
        other.send(f"line {i:03d}")
    assert slow.lines() == ["history", "one"]  # nothing more written while paused
    assert len(other.lines()) == 101  # the other follower is not held up

    slow.channel.resumeProducing()  # it reads again: the queue, then what it missed
    got = slow.lines()
    kept = [line for line in got if line.startswith("line ")]
    assert 10 <= len(kept) < 100 and kept == [f"line {i:03d} " + "x" * 40
                                              for i in range(len(kept))]
    assert got[-1] == (f"shipway: {100 - len(kept)} lines dropped here: this follower "
                       "read too slowly for them")
    slow.send("after")
    assert slow.lines()[-1] == "after" and not slow.transport.disconnecting


def test_a_follower_that_reads_nothing_for_too_long_is_cut() -> None:
    clock = Clock()
    stuck = Follower(clock, max_paused=10.0)
    stuck.channel.pauseProducing()
    stuck.send("never read")
    clock.advance(9)
    stuck.channel.resumeProducing()  # it read a little: the clock starts again
    stuck.channel.pauseProducing()
    clock.advance(9)
    assert not stuck.transport.disconnecting and stuck.stopped == 0
    stuck.send("queued")
    clock.advance(1)
    assert stuck.lines()[-1] == ("shipway: this follower read nothing for 10 s and is "
                                 "disconnected; 1 lines dropped. Follow again to go on.")
    assert stuck.stopped == 1  # unsubscribed from the store
    assert stuck.transport.disconnecting
    stuck.send("after the cut")  # the store may still hand it a line: ignored
    assert "after the cut" not in stuck.lines()


def test_a_batch_is_encoded_once_and_a_paused_follower_keeps_what_fits() -> None:
    """The store hands each follower a batch's lines in one call, encoded
    once for all (batch_ndjson); a paused follower given a batch larger than
    its bound keeps the oldest that fit and counts the rest, in order."""
    import datetime as dt

    from controller.api_follow import batch_ndjson
    from logger.store import LogLine

    at = dt.datetime(2026, 11, 28, 14, 0, 1, tzinfo=dt.timezone.utc)
    batch = [LogLine(at, "app", "web.1", f"line {i:03d} \xe9\"\udcff", i + 1) for i in range(100)]
    encoded = batch_ndjson(batch)
    assert batch_ndjson(batch) is encoded  # the second follower: not encoded again
    assert [json.loads(data)["log"] for data in encoded] == [line.format() for line in batch]
    clock = Clock()
    fast, slow = Follower(clock), Follower(clock, max_pending=1000)
    slow.channel.pauseProducing()
    assert fast.sink is not None and slow.sink is not None
    fast.sink(encoded)  # type: ignore[arg-type]
    slow.sink(encoded)  # type: ignore[arg-type]
    assert fast.lines() == ["history"] + [line.format() for line in batch]
    slow.channel.resumeProducing()
    got = slow.lines()[1:]
    kept = len(got) - 1
    assert 5 <= kept < 100 and got[:-1] == [line.format() for line in batch[:kept]]
    assert got[-1] == (f"shipway: {100 - kept} lines dropped here: this follower "
                       "read too slowly for them")
