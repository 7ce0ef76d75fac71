"""Finding 8: app names such as `api` or `www` were accepted, so an app
could pose as part of the platform (api.<base domain>) or take a name
clients trust on their own (wpad, autodiscover)."""
from __future__ import annotations

import pytest

from tests.conftest import ShipwayServer

RESERVED = ["api", "www", "admin", "git", "ssh", "mail", "router", "status", "shipway",
            "localhost", "wpad", "autodiscover"]


@pytest.mark.parametrize("name", RESERVED)
def test_reserved_names_are_refused(shipway_server: ShipwayServer, name: str) -> None:
    user = shipway_server.signup()
    r = user.api.post("/api/apps", json={"name": name.upper() if name == "www" else name})
    assert r.status_code == 400, r.text
    assert f"the app name '{name}' is reserved" in r.json()["error"]
    assert user.api.get("/api/apps").json() == []


def test_the_platform_host_name_and_operator_names_are_reserved(make_server) -> None:
    server = make_server(env={"SHIPWAY_BASE_DOMAIN": "example.test",
                              "SHIPWAY_PUBLIC_HOST": "deploy.example.test",
                              "SHIPWAY_RESERVED_APP_NAMES": "billing, intranet"})
    user = server.signup()
    for name in ("deploy", "billing", "intranet"):
        r = user.api.post("/api/apps", json={"name": name})
        assert r.status_code == 400 and "reserved" in r.json()["error"], (name, r.text)
    ok = user.api.post("/api/apps", json={"name": "api-client"})
    assert ok.status_code == 201, ok.text
