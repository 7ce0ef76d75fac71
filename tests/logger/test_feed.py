"""A follower's feed (logger/feed.py): lines kept until its sink is
attached reach the sink before any line added meanwhile."""
from __future__ import annotations

import datetime as dt
import threading

from logger.feed import LogFeed
from logger.store import LogLine

AT = dt.datetime(2026, 11, 28, 14, 0, 1, tzinfo=dt.timezone.utc)


def test_a_line_added_while_the_kept_ones_are_handed_over_comes_after_them() -> None:
    feed = LogFeed()
    for seq in (1, 2):
        feed.put(LogLine(AT, "app", "web.1", f"kept {seq}", seq))
    got: list[int] = []
    adder: list[threading.Thread] = []
    held: list[bool] = []

    def sink(lines: list[LogLine]) -> None:
        got.extend(line.seq for line in lines)
        held.append(feed._lock.locked())  # the deterministic half of the check
        if not adder:  # the fan-out thread adds a line during the hand-over
            adder.append(threading.Thread(
                target=feed.put, args=(LogLine(AT, "app", "web.1", "new", 3),)))
            adder[0].start()
            adder[0].join(0.5)  # bounded: it waits for the hand-over to end

    feed.attach(sink)
    adder[0].join(10)
    assert not adder[0].is_alive()
    assert got == [1, 2, 3]
    # The kept lines were handed over under the feed's lock (the race the
    # thread above may or may not hit in 0.5 s cannot happen).
    assert held[0] is True
