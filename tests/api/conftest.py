"""The API tests' server: a real `shipway server` whose runner and builder
are the in-memory ones (runner: memory, builder: memory), so that these
tests need no Docker; what they check (authentication, authorization,
input, errors, the OpenAPI document) is the API's, above the runner."""
from __future__ import annotations

from typing import Iterator

import pytest

from tests.conftest import ShipwayServer, _stop_nginx


@pytest.fixture(scope="session")
def shipway_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShipwayServer]:
    server = ShipwayServer(tmp_path_factory.mktemp("shipway-api"),
                           env={"SHIPWAY_RUNNER": "memory", "SHIPWAY_BUILDER": "memory"}).start()
    yield server
    server.stop()
    server.cleanup_docker()
    _stop_nginx(server.data_dir)
