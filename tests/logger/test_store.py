"""The log store: bounded history per app, followers, the line format, and
the parsing of Docker's timestamped lines."""
from __future__ import annotations

import datetime as dt

import pytest

from logger.docker_collector import parse_docker_line
from logger.store import LogFeed, LogStore

AT = dt.datetime(2026, 11, 28, 14, 0, 1, 250000, tzinfo=dt.timezone.utc)


def test_history_is_bounded_per_app_and_oldest_first() -> None:
    store = LogStore(lines_per_app=3)
    for i in range(5):
        store.add("a", "app", "web.1", f"line {i}")
    store.add("b", "app", "web.1", "other app")
    assert [line.text for line in store.tail("a", 10)] == ["line 2", "line 3", "line 4"]
    assert [line.text for line in store.tail("a", 2)] == ["line 3", "line 4"]
    assert store.tail("a", 0) == [] and store.tail("nope", 5) == []
    store.drop("a")
    assert store.tail("a", 10) == [] and len(store.tail("b", 10)) == 1


def test_format_is_time_source_process_text() -> None:
    store = LogStore()
    store.add("a", "app", "web.3f2a1c", "GET / 200\r\n", at=AT)
    assert store.tail("a", 1)[0].format() == \
        "2026-11-28T14:00:01.250000Z app[web.3f2a1c]: GET / 200"


def test_followers_get_new_lines_until_they_stop_and_are_capped() -> None:
    store = LogStore(subscribers_per_app=2)
    got: list[str] = []
    stop = store.subscribe("a", lambda line: got.append(line.text))
    store.add("a", "shipway", "deploy", "one")
    store.add("b", "shipway", "deploy", "not mine")
    other = store.subscribe("a", lambda line: None)
    with pytest.raises(ValueError):
        store.subscribe("a", lambda line: None)
    stop()
    store.add("a", "shipway", "deploy", "two")
    assert got == ["one"]
    other()
    store.subscribe("a", lambda line: None)  # room again


def test_feed_keeps_lines_until_attached_then_passes_them_on() -> None:
    store = LogStore()
    feed = LogFeed(limit=2)
    store.subscribe("a", feed.put)
    for text in ("x", "y", "z"):
        store.add("a", "app", "web.1", text)
    assert [line.text for line in feed.pending()] == ["y", "z"]  # bounded
    got: list[str] = []
    feed.attach(lambda line: got.append(line.text))
    store.add("a", "app", "web.1", "after")
    assert got == ["y", "z", "after"] and feed.pending() == []


@pytest.mark.parametrize("raw, at, text", [
    (b"2026-11-28T14:00:01.250000123Z hello world", AT, "hello world"),
    (b"2026-11-28T14:00:01.25Z x", AT, "x"),
    (b"no timestamp here", None, "no timestamp here"),
    (b"2026-13-99T00:00:00.0Z bad date", None, "2026-13-99T00:00:00.0Z bad date"),
])
def test_docker_lines(raw: bytes, at: dt.datetime | None, text: str) -> None:
    assert parse_docker_line(raw) == (at, text)
