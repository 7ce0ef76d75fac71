"""What every resource module of the store shares: the database, the
keyring, the deployer slot, and small row → value-object helpers."""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from twisted.logger import Logger

from controller.crypto import Keyring
from controller.db import Database
from controller.errors import Unavailable
from controller.models import App, User
from controller.service import Controller, Deployer
from core.settings import Settings

log = Logger(namespace="shipway.controller")


def silent(line: str) -> None:
    """The default `output`: nobody is listening."""


class StoreBase(Controller):
    """State shared by the resource mixins (see `controller/store.py`)."""

    settings: Settings
    db: Database
    keyring: Keyring
    api_key_secret: bytes
    _deployer: Deployer | None
    _destroy_hooks: list[Callable[[App], None]]
    _hooks_lock: threading.Lock
    _release_locks: dict[int, threading.RLock]  # app id -> its lock

    def release_lock(self, app: App) -> threading.RLock:
        """Held from the making of a release of `app` to the end of its
        deploy, and around every other change of what runs (scale, restart,
        resize). So the newest succeeded release, which is what "current"
        means, is always what the runner last ran, and a config change or a
        rollback is never made from a release whose deploy has not ended (it
        would take the previous slug and undo a push). One process's lock:
        the runner of this process is the only one changing what runs."""
        with self._hooks_lock:
            return self._release_locks.setdefault(app.id, threading.RLock())

    @contextlib.contextmanager
    def serialized(self, app: App, output: Callable[[str], None] | None = None) -> Iterator[None]:
        """Hold `release_lock(app)`, saying so on `output` when another
        change of the app is deploying first (a user would see a hang)."""
        lock = self.release_lock(app)
        if not lock.acquire(blocking=False):
            (output or silent)(f"-----> Waiting for the deploy in progress on {app.name} to end")
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def set_deployer(self, deployer: Deployer) -> None:
        self._deployer = deployer

    def deployer(self) -> Deployer:
        """The wired deployer; Unavailable until the composition root sets it."""
        if self._deployer is None:
            raise Unavailable("no deployer is configured in this process")
        return self._deployer

    @staticmethod
    def _user(row: Any) -> User:
        return User(id=row.id, email=row.email, created_at=row.created_at)

    @staticmethod
    def _one(conn: Connection, query: sa.Select) -> Any:
        return conn.execute(query).first()
