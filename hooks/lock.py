"""The per-app push lock: one deploying push per app at a time.

Two layers, because Shipway may run as several processes sharing one data
dir: an in-process mutex (threads of this server) and an `fcntl` lock on a
file under the data dir (other processes). The kernel drops an fcntl lock
when its holder dies, and the context manager releases both layers on any
exception, so a crashed push never leaves an app locked.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path
from typing import Iterator


class PushInProgress(Exception):
    """Another push to the same app holds the lock."""

    def __init__(self, app: str) -> None:
        super().__init__(f"another push to {app} is in progress")
        self.app = app


class PushLocks:
    def __init__(self, lock_dir: Path) -> None:
        self.lock_dir = lock_dir
        self._mutex = threading.Lock()
        self._held: set[str] = set()

    @contextlib.contextmanager
    def hold(self, app: str) -> Iterator[None]:
        """Take the app's lock at once or raise PushInProgress (never waits:
        a pusher would rather hear "busy" than hang behind a long build)."""
        with self._mutex:
            if app in self._held:
                raise PushInProgress(app)
            self._held.add(app)
        fd = -1
        try:
            self.lock_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_dir / f"{app}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise PushInProgress(app) from None
            yield
        finally:
            if fd >= 0:
                os.close(fd)  # closing the descriptor drops the flock
            with self._mutex:
                self._held.discard(app)
