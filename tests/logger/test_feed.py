"""A follower's feed (logger/feed.py): lines kept until its sink is
attached reach the sink before any line added meanwhile, and the fan-out
thread adding them never waits for the hand-over."""
from __future__ import annotations

import datetime as dt
import threading

from logger.feed import LogFeed
from logger.store import LogLine

AT = dt.datetime(2026, 11, 28, 14, 0, 1, tzinfo=dt.timezone.utc)


def _line(seq: int) -> LogLine:
    return LogLine(AT, "app", "web.1", f"line {seq}", seq)


def test_lines_added_during_the_hand_over_come_after_it_and_never_wait() -> None:
    """The sink holds the first hand-over until two batches were put from
    another thread (the fan-out): each put returns at once (no lock held
    across the sink), and the sink gets 1 2, then 3 4 5, in order."""
    feed = LogFeed()
    for seq in (1, 2):
        feed.put(_line(seq))
    got: list[list[int]] = []
    puts_done = threading.Event()

    def fan_out() -> None:
        feed.put(_line(3))
        feed.put_many([_line(4), _line(5)])
        puts_done.set()

    def sink(lines: list[LogLine]) -> None:
        got.append([line.seq for line in lines])
        if len(got) == 1:
            threading.Thread(target=fan_out).start()
            # With the lock held here, the puts would wait for this sink.
            assert puts_done.wait(5), "the fan-out waited for the hand-over"

    feed.attach(sink)
    feed.put(_line(6))  # attached: straight to the sink
    assert got == [[1, 2], [3, 4, 5], [6]]
    assert feed.pending() == []


def test_an_empty_feed_attaches_and_passes_lines_on() -> None:
    feed = LogFeed()
    got: list[int] = []
    feed.attach(lambda lines: got.extend(line.seq for line in lines))
    feed.put_many([_line(1), _line(2)])
    feed.put_many([])
    assert got == [1, 2]


def test_a_feed_never_attached_keeps_at_most_its_limit() -> None:
    feed = LogFeed(limit=3)
    feed.put_many([_line(seq) for seq in range(1, 6)])
    assert [line.seq for line in feed.pending()] == [3, 4, 5]


def test_lines_the_history_already_sent_are_left_out_now_and_later() -> None:
    """The history was read after subscribing and ended at line 3: lines
    1-3 kept by the feed, or handed on by the fan-out only after the
    attach, are not sent twice; later ones are."""
    feed = LogFeed()
    feed.put_many([_line(2), _line(3), _line(4)])
    got: list[int] = []
    feed.attach(lambda lines: got.extend(line.seq for line in lines), after=3)
    feed.put_many([_line(3)])  # a late fan-out batch of an old line
    feed.put_many([_line(3), _line(5)])
    feed.put_many([_line(6)])
    assert got == [4, 5, 6]


def _text(lines: list[LogLine]) -> list[str]:
    return [line.text if line.source == "shipway" else str(line.seq) for line in lines]


def test_lines_dropped_before_the_attach_are_counted_to_the_follower() -> None:
    """Past its limit the feed drops the oldest lines; the follower is told
    how many, before the lines that came after them (Heroku's L11)."""
    feed = LogFeed(limit=3)
    feed.put_many([_line(seq) for seq in range(1, 4)])
    feed.put_many([_line(seq) for seq in range(4, 7)])  # 1-3 fall off
    feed.put(_line(7))  # 4 falls off
    got: list[LogLine] = []
    feed.attach(got.extend)
    assert _text(got) == ["4 lines dropped here: this follower fell more than 3 lines behind",
                          "5", "6", "7"]
    assert (got[0].source, got[0].process) == ("shipway", "logs")


def test_dropped_lines_the_history_showed_are_not_counted() -> None:
    """The history ended at line 5: of the dropped 1-6, only 6 is lost."""
    feed = LogFeed(limit=2)
    feed.put_many([_line(seq) for seq in range(1, 9)])
    got: list[LogLine] = []
    feed.attach(got.extend, after=5)
    assert _text(got) == ["1 line dropped here: this follower fell more than 2 lines behind",
                          "7", "8"]
    feed2 = LogFeed(limit=2)
    feed2.put_many([_line(seq) for seq in range(1, 5)])
    got2: list[LogLine] = []
    feed2.attach(got2.extend, after=3)
    assert _text(got2) == ["4"]  # 1 and 2 dropped, but the history had them


def test_drops_during_the_hand_over_are_counted_too() -> None:
    """A burst while the kept lines are handed over overflows the feed
    again: the second notice comes before the lines after that burst."""
    feed = LogFeed(limit=2)
    feed.put_many([_line(1), _line(2)])
    got: list[list[str]] = []

    def sink(lines: list[LogLine]) -> None:
        got.append(_text(lines))
        if len(got) == 1:
            feed.put_many([_line(seq) for seq in range(3, 8)])  # 3-5 fall off

    feed.attach(sink)
    assert got == [["1", "2"],
                   ["3 lines dropped here: this follower fell more than 2 lines behind"],
                   ["6", "7"]]


def test_the_count_past_the_limit_leaves_out_what_the_history_showed() -> None:
    """More lines dropped than the feed's limit: the oldest (1-3, which the
    history ending at 3 showed) are still not counted; 4-6 are."""
    feed = LogFeed(limit=2)
    feed.put_many([_line(seq) for seq in range(1, 9)])  # 1-6 fall off, 7-8 kept
    got: list[LogLine] = []
    feed.attach(got.extend, after=3)
    assert _text(got) == ["3 lines dropped here: this follower fell more than 2 lines behind",
                          "7", "8"]
