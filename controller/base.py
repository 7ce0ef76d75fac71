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
from core.locks import Locks, NamedLock
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
    locks: Locks  # core.locks: this process's named locks, held across processes

    def release_lock(self, app: App) -> NamedLock:
        """Held from the making of a release of `app` to the end of its
        deploy, and around every other change of what runs (scale, restart,
        resize, destroy). So the newest succeeded release, which is what
        "current" means, is always what the runner last ran, and a config
        change or a rollback is never made from a release whose deploy has
        not ended (it would take the previous slug and undo a push).
        Re-entrant in its thread (the deployer takes it again) and held
        across every server on this database: two servers never deploy one
        app at once, and never number two releases alike."""
        return self.locks.get(f"app:{app.name}")

    @contextlib.contextmanager
    def serialized(self, app: App, output: Callable[[str], None] | None = None) -> Iterator[None]:
        """Hold `release_lock(app)`, saying so on `output` when another
        change of the app is deploying first (a user would see a hang)."""
        with self.locks.hold(f"app:{app.name}", wait=True, on_wait=lambda: (output or silent)(
                f"-----> Waiting for the deploy in progress on {app.name} to end")):
            yield

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
