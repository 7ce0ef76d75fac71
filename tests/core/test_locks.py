"""core/locks.py on both backends (file lock with SQLite, advisory lock with
PostgreSQL), contended by real processes: a lock that only held inside one
process fails every test here but the thread ones."""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from core.locks import Busy, Locks, advisory_key, lock_backend

CTX = multiprocessing.get_context("fork")


def _locks(database_url: str, data_dir: str) -> Locks:
    return Locks(lock_backend(database_url, Path(data_dir)))


@pytest.fixture
def where(database_url: str, tmp_path: Path) -> tuple[str, str]:
    """(database url, data dir): the two things a backend is chosen by."""
    return database_url, str(tmp_path / "data")


def _hold(where: tuple[str, str], name: str, ready: Any, seconds: float) -> None:
    with _locks(*where).hold(name, wait=True):
        ready.set()
        time.sleep(seconds)


def _start_holder(where: tuple[str, str], name: str, seconds: float) -> Any:
    ready = CTX.Event()
    child = CTX.Process(target=_hold, args=(where, name, ready, seconds))
    child.start()
    assert ready.wait(20), "the holder never took the lock"
    return child


def test_try_mode_says_busy_while_another_process_holds(where: tuple[str, str]) -> None:
    child = _start_holder(where, "push:demo", 600)
    try:
        locks = _locks(*where)
        with pytest.raises(Busy) as busy:
            with locks.hold("push:demo", busy="another push to demo is in progress"):
                pass
        assert str(busy.value) == "another push to demo is in progress"
        with locks.hold("push:other"):  # other names are free
            pass
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
    with locks.hold("push:demo"):  # the kernel / database dropped the dead holder's lock
        pass


def test_wait_mode_blocks_until_the_other_process_releases(where: tuple[str, str]) -> None:
    child = _start_holder(where, "app:demo", 1.5)
    locks = _locks(*where)
    said: list[str] = []
    with pytest.raises(Busy):  # a timeout shorter than the hold
        with locks.hold("app:demo", wait=True, timeout=0.3):
            pass
    started = time.monotonic()
    with locks.hold("app:demo", wait=True, on_wait=lambda: said.append("waiting")):
        waited = time.monotonic() - started
    child.join(10)
    assert said == ["waiting"]
    assert waited > 0.5, f"took the lock after {waited:.2f}s while the holder still had it"


def _worker(where: tuple[str, str], name: str, journal: str, rounds: int) -> None:
    locks = _locks(*where)
    for _ in range(rounds):
        with locks.hold(name, wait=True):
            with open(journal, "a") as f:
                f.write(f"in {os.getpid()}\n")
            time.sleep(0.01)
            with open(journal, "a") as f:
                f.write(f"out {os.getpid()}\n")


def test_processes_never_hold_at_once(where: tuple[str, str], tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    workers = [CTX.Process(target=_worker, args=(where, "app:demo", str(journal), 15))
               for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    lines = journal.read_text().splitlines()
    assert len(lines) == 4 * 15 * 2
    for entered, left in zip(lines[::2], lines[1::2]):  # strictly in, out, in, out...
        assert entered.startswith("in ") and left == "out " + entered[3:], lines


def test_reentrant_in_its_thread_exclusive_to_other_threads(where: tuple[str, str]) -> None:
    locks = _locks(*where)
    seen: list[str] = []

    def other() -> None:
        try:
            with locks.hold("app:demo"):
                seen.append("taken")
        except Busy:
            seen.append("busy")

    with locks.hold("app:demo", wait=True):
        with locks.hold("app:demo"):  # the deployer inside the release path
            thread = threading.Thread(target=other)
            thread.start()
            thread.join(10)
    assert seen == ["busy"]
    with pytest.raises(Busy):  # a non-reentrant lock refuses its own holder too
        with locks.hold("push:demo", reentrant=False):
            with locks.hold("push:demo", reentrant=False):
                pass


def test_advisory_keys_are_64_bit_and_distinct() -> None:
    keys = {advisory_key(f"app:{i}") for i in range(1000)}
    assert len(keys) == 1000
    assert all(-(2 ** 63) <= k < 2 ** 63 for k in keys)
