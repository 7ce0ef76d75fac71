"""Fixtures for the controller's service-level tests: a real store on a
fresh SQLite file or PostgreSQL database (the `database_url` fixture)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from controller.models import App, User
from controller.store import Store, open_controller
from server.settings import Limits, Settings


@pytest.fixture
def open_store(tmp_path: Path, database_url: str) -> Iterator[Callable[..., Store]]:
    """Open (or reopen) the store on this test's database and data dir."""
    opened: list[Store] = []

    def make(**kw: Any) -> Store:
        settings = Settings(data_dir=tmp_path / "data", database_url=database_url, **kw)
        store = open_controller(settings)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Callable[..., Store]) -> Store:
    return open_store()


@pytest.fixture
def owner(store: Store) -> User:
    return store.signup("owner@example.com", "owner-password")[0]


@pytest.fixture
def app(store: Store, owner: User) -> App:
    return store.create_app(owner, "demo-app")
