"""The log store: durable bounded history per app, followers, the line
format, bad input, and the parsing of Docker's timestamped lines."""
from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from logger.docker_collector import parse_docker_chunk, parse_docker_line
from logger.feed import LogFeed
from logger.store import MAX_LINE, LogLine, LogStore

AT = dt.datetime(2026, 11, 28, 14, 0, 1, 250000, tzinfo=dt.timezone.utc)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    made = LogStore(tmp_path / "logs.sqlite3" if request.param == "sqlite" else None,
                    lines_per_app=3, subscribers_per_app=2)
    yield made
    made.close()


def test_tail_is_oldest_first_per_app(store: LogStore) -> None:
    for i in range(5):
        store.add("a", "app", "web.1", f"line {i}")
    store.add("b", "app", "web.1", "other app")
    store.flush()
    assert [line.text for line in store.tail("a", 3)] == ["line 2", "line 3", "line 4"]
    assert [line.text for line in store.tail("a", 2)] == ["line 3", "line 4"]
    assert store.tail("a", 0) == [] and store.tail("nope", 5) == []
    store.drop("a")
    assert store.tail("a", 10) == [] and len(store.tail("b", 10)) == 1


def test_history_survives_a_restart_and_numbering_goes_on(tmp_path: Path) -> None:
    first = LogStore(tmp_path / "logs.sqlite3")
    first.add("a", "app", "web.1", "before the restart")
    first.close()
    again = LogStore(tmp_path / "logs.sqlite3")
    again.add("a", "shipway", "deploy", "after")
    again.flush()
    lines = again.tail("a", 10)
    assert [line.text for line in lines] == ["before the restart", "after"]
    assert lines[0].seq < lines[1].seq
    again.close()


def test_history_is_bounded_in_bytes_per_app(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.sqlite3", bytes_per_app=100_000, lines_per_app=100_000)
    for i in range(2000):
        store.add("a", "app", "web.1", f"{i:05d} " + "x" * 194)
    store.add("b", "app", "web.1", "kept")
    store.flush()
    kept = store.tail("a", 100_000)
    assert 300 < len(kept) < 400  # ~100 kB of ~260-byte rows
    assert kept[-1].text.startswith("01999")
    assert [line.text for line in store.tail("b", 5)] == ["kept"]
    size = (tmp_path / "logs.sqlite3").stat().st_size
    store.close()
    assert size < 2_000_000


def test_source_filter_names_sources_processes_and_types(store: LogStore) -> None:
    store.lines_per_app = 100
    for source, process in [("app", "web.1a"), ("app", "worker.2b"), ("shipway", "router"),
                            ("shipway", "build"), ("app", "web.3c"), ("shipway", "release")]:
        store.add("a", source, process, f"{process} line")
    store.flush()
    pick = lambda s: [line.process for line in store.tail("a", 10, s)]  # noqa: E731
    assert pick("web") == ["web.1a", "web.3c"]
    assert pick("router") == ["router"] and pick("release") == ["release"]
    assert pick("app") == ["web.1a", "worker.2b", "web.3c"]
    assert pick("web.3c") == ["web.3c"] and pick("we") == []


def test_format_is_time_source_process_text(store: LogStore) -> None:
    store.add("a", "app", "web.3f2a1c", "GET / 200\r\n", at=AT)
    store.flush()
    assert store.tail("a", 1)[0].format() == \
        "2026-11-28T14:00:01.250000Z app[web.3f2a1c]: GET / 200"


def test_a_long_line_is_cut_and_marked(store: LogStore) -> None:
    store.add("a", "app", "web.1", "y" * 1_000_000)
    store.flush()
    text = store.tail("a", 1)[0].text
    assert text == "y" * MAX_LINE + f" [truncated {1_000_000 - MAX_LINE} chars]"


def test_followers_get_new_lines_until_they_stop_and_are_capped(store: LogStore) -> None:
    got: list[str] = []
    stop = store.subscribe("a", lambda line: got.append(line.text))
    store.add("a", "shipway", "deploy", "one")
    store.add("b", "shipway", "deploy", "not mine")
    other = store.subscribe("a", lambda line: None)
    with pytest.raises(ValueError):
        store.subscribe("a", lambda line: None)
    store.flush()
    stop()
    store.add("a", "shipway", "deploy", "two")
    store.flush()
    assert got == ["one"]
    other()
    store.subscribe("a", lambda line: None)  # room again


def test_a_stuck_follower_never_slows_the_writer_of_lines(tmp_path: Path) -> None:
    """add() only queues: a subscriber that blocks holds up nobody who logs,
    and past the queue's bound lines are dropped and counted."""
    store = LogStore(tmp_path / "logs.sqlite3", max_pending_bytes=10_000)
    release = threading.Event()
    store.subscribe("a", lambda line: release.wait(10))
    started = time.monotonic()
    for i in range(5000):
        store.add("a", "app", "web.1", f"line {i:04d}")
    assert time.monotonic() - started < 2
    assert store.dropped > 0
    release.set()
    store.close()


def test_feed_keeps_lines_until_attached_then_passes_them_on(store: LogStore) -> None:
    feed = LogFeed(limit=2)
    store.subscribe("a", feed.put_many, batches=True)
    for text in ("x", "y", "z"):
        store.add("a", "app", "web.1", text)
    store.flush()
    assert [line.text for line in feed.pending()] == ["y", "z"]  # bounded
    got: list[str] = []
    feed.attach(lambda lines: got.extend(line.text for line in lines))
    store.add("a", "app", "web.1", "after")
    store.flush()
    assert got == ["1 line dropped here: this follower fell more than 2 lines behind",
                   "y", "z", "after"] and feed.pending() == []


@pytest.mark.parametrize("raw, at, text", [
    (b"2026-11-28T14:00:01.250000123Z hello world", AT, "hello world"),
    (b"2026-11-28T14:00:01.25Z x", AT, "x"),
    (b"no timestamp here", None, "no timestamp here"),
    (b"2026-13-99T00:00:00.0Z bad date", None, "2026-13-99T00:00:00.0Z bad date"),
    (b"2026-11-28T14:00:01.25Z bad \xff\xfe utf8", AT, "bad \ufffd\ufffd utf8"),
])
def test_docker_lines(raw: bytes, at: dt.datetime | None, text: str) -> None:
    assert parse_docker_line(raw) == (at, text)


def test_docker_chunk_stamps_match_the_stores_own(tmp_path: Path) -> None:
    """The stamp cut from Docker's text is the text the store would format
    from the parsed time, whatever shape Docker gave (a short fraction and
    a line without a stamp are formatted by the store), and the store
    keeps it."""
    raw = (b"2026-11-28T14:00:01.250000123Z full\n2026-11-28T14:00:01.25Z short\n"
           b"no stamp\n2026-11-28T23:59:59.999999999Z \xff end\n"
           # A short stamp whose text has a Z where a full stamp's ends.
           b"2026-11-28T14:00:01.12345Z abZdef\n2026-11-28T14:00:01.1Z abcdefZ")
    items, stamps = parse_docker_chunk(raw)
    assert [text for _, text in items] == ["full", "short", "no stamp", "\ufffd end",
                                           "abZdef", "abcdefZ"]
    assert stamps == ["2026-11-28T14:00:01.250000Z", "", "", "2026-11-28T23:59:59.999999Z",
                      "", ""]
    store = LogStore(tmp_path / "logs.sqlite3")
    try:
        store.add_many("a", "app", "web.1", items, stamps)
        store.flush()
        for line, (at, _) in zip(store.tail("a", 10), items):
            if at is not None:
                assert line.stamp() == LogLine(at, "app", "web.1", "").stamp()
        assert [line.stamp()[:19] for line in store.tail("a", 10)][:2] == [
            "2026-11-28T14:00:01"] * 2
    finally:
        store.close()


def test_a_failing_follower_or_drain_stops_nothing(store: LogStore) -> None:
    """A follower that raises on one line still gets the next ones, and the
    other followers and drains get them all."""
    picky, other, tapped = [], [], []

    def fails_on_b(line: LogLine) -> None:
        if line.text == "b":
            raise RuntimeError("this follower's request is gone")
        picky.append(line.text)

    def broken_tap(app: str, lines: list[LogLine]) -> None:
        raise RuntimeError("a drain's bug")

    store.tap(broken_tap)
    store.tap(lambda app, lines: tapped.extend(line.text for line in lines))
    store.subscribe("a", fails_on_b)
    store.subscribe("a", lambda line: other.append(line.text))
    store.add_many("a", "app", "web.1", [(None, "a"), (None, "b"), (None, "c")])
    store.flush()
    assert picky == ["a", "c"] and other == tapped == ["a", "b", "c"]
    assert store.failures == {"drain": 1}  # counted (and logged once), not silent


def test_a_batch_follower_gets_each_batch_in_one_call_the_same_list_for_all() -> None:
    """`batches=True`: one call per fan-out batch per follower, with the
    app's lines of the batch in order, one list shared by all followers (so
    it is encoded once for all: controller/api_follow.py batch_ndjson)."""
    store = LogStore(None)
    gate = threading.Event()
    calls: list[list[LogLine]] = []
    others: list[list[LogLine]] = []
    store.subscribe("a", calls.append, batches=True)
    store.subscribe("a", others.append, batches=True)
    store.subscribe("a", lambda line: gate.wait(10))  # holds the fan-out after the first batch
    store.add("a", "app", "web.1", "first")
    deadline = time.monotonic() + 10
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)  # bounded wait: the first batch is in the fan-out's hands
    store.add_many("a", "app", "web.1", [(None, f"line {i}") for i in range(100)])
    store.add("b", "app", "web.1", "not mine")
    store.add("a", "app", "web.1", "last")
    gate.set()
    store.close()
    assert [[line.text for line in batch] for batch in calls] == [
        ["first"], [f"line {i}" for i in range(100)] + ["last"]]
    assert all(mine is theirs for mine, theirs in zip(calls, others))


def test_a_batch_written_in_many_row_inserts_is_kept_whole_and_in_order(tmp_path: Path) -> None:
    """The disk thread writes ROWS rows per INSERT and the rest one by one:
    every line of a batch crossing those boundaries is on disk, in order,
    after a restart."""
    from logger.store import ROWS

    count = 2 * ROWS + 5
    store = LogStore(tmp_path / "logs.sqlite3", lines_per_app=count + 10)
    store.add_many("a", "app", "web.1", [(None, f"line {i} é\ufffd") for i in range(count)])
    store.add("b", "app", "web.1", "other app")
    store.close()
    again = LogStore(tmp_path / "logs.sqlite3", lines_per_app=count + 10)
    try:
        kept = again.tail("a", count + 10)
        assert [line.text for line in kept] == [f"line {i} é\ufffd" for i in range(count)]
        assert [line.text for line in again.tail("b", 5)] == ["other app"]
    finally:
        again.close()


def test_a_batch_the_disk_refuses_does_not_stop_later_ones(tmp_path: Path) -> None:
    """A batch SQLite refuses mid-transaction (here a trigger aborts its
    INSERT; on a real host, a full disk) is rolled back: it alone is lost
    (counted), and the next batches reach the disk. Left open, the
    transaction made every later BEGIN fail."""
    path = tmp_path / "logs.sqlite3"
    LogStore(path).close()  # the schema
    db = sqlite3.connect(path)
    db.execute("CREATE TRIGGER refuse BEFORE INSERT ON lines WHEN NEW.text = 'refused' "
               "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    db.commit()
    db.close()
    store = LogStore(path)
    try:
        store.add("a", "app", "web.1", "refused")
        store.flush()
        assert store.dropped == 1
        store.add("a", "app", "web.1", "after")
        store.flush()
    finally:
        store.close()
    again = LogStore(path)
    try:
        assert [line.text for line in again.tail("a", 10)] == ["after"]
    finally:
        again.close()


class _SlowDisk(LogStore):
    """A disk thread held inside its transaction until the test lets go (a fault)."""

    def __init__(self, path: Path) -> None:
        self.inside, self.go = threading.Event(), threading.Event()
        super().__init__(path)

    def _insert(self, db: sqlite3.Connection, rows: list[tuple]) -> None:
        self.inside.set()
        assert self.go.wait(10)
        super()._insert(db, rows)


def test_tail_shows_a_line_the_fan_out_or_the_disk_holds(tmp_path: Path) -> None:
    """A line in neither queue (the fan-out's batch in hand, or the disk
    thread's before its commit) is still in `tail`: it was missing from
    both the queues and the disk for that moment."""
    store = _SlowDisk(tmp_path / "logs.sqlite3")
    in_fan_out, let_go = threading.Event(), threading.Event()

    def follower(line: LogLine) -> None:
        in_fan_out.set()
        assert let_go.wait(10)

    store.subscribe("a", follower)
    try:
        store.add("a", "app", "web.1", "held")
        assert in_fan_out.wait(5)
        assert [line.text for line in store.tail("a", 10)] == ["held"]  # the fan-out's
        let_go.set()
        assert store.inside.wait(5)
        assert [line.text for line in store.tail("a", 10)] == ["held"]  # the disk's
        store.go.set()
        store.flush()
        assert [line.text for line in store.tail("a", 10)] == ["held"]
    finally:
        let_go.set()
        store.go.set()
        store.close()
