"""The end-to-end tests' servers run on Docker (the default runner and
builder); tests/conftest.py gives the tests outside tests/e2e/ the same
fixtures with the in-memory ones (issue 15 item 7)."""
from __future__ import annotations

from typing import Any, Iterator

import pytest

from tests.conftest import ShipwayServer, servers_made, shared_server


@pytest.fixture
def make_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from servers_made(tmp_path_factory, {})


@pytest.fixture(scope="session")
def shipway_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShipwayServer]:
    yield from shared_server(tmp_path_factory, {})
