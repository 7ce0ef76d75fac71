"""Maintenance mode and canary through the REST API of a real server (no
deploy needed): input checks, permissions, what is stored, and that a
destroyed app takes its states with it."""
from __future__ import annotations

import http.client

from tests.conftest import ShipwayServer, TestUser, unique


def _app(user: TestUser) -> str:
    name = unique("m")
    r = user.api.post("/api/apps", json={"name": name})
    assert r.status_code == 201, r.text
    return name


def _status(server: ShipwayServer, app: str) -> tuple[int, str | None]:
    conn = http.client.HTTPConnection("127.0.0.1", server.router_port, timeout=10)
    try:
        conn.request("GET", "/", headers={"Host": f"{app}.localhost"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("Retry-After")
    finally:
        conn.close()


def test_maintenance_and_canary_api(shipway_server: ShipwayServer, user: TestUser) -> None:
    app, other = _app(user), _app(user)
    api = user.api
    assert api.get(f"/api/apps/{app}/maintenance").json() == {
        "app": app, "maintenance": False, "canary": None}
    r = api.put(f"/api/apps/{app}/maintenance", json={"maintenance": True})
    assert r.status_code == 200 and r.json()["maintenance"] is True
    # Not deployed yet: not routed at all (no page says it exists).
    assert _status(shipway_server, app) == (404, None)
    assert api.put(f"/api/apps/{app}/maintenance", json={"maintenance": "yes"}).status_code == 400

    for bad in (101, -1, "50", True, None):
        r = api.put(f"/api/apps/{app}/canary", json={"canary": other, "weight": bad})
        assert r.status_code == 400, (bad, r.text)
    assert api.put(f"/api/apps/{app}/canary", json={"canary": app, "weight": 5}).status_code == 400
    r = api.put(f"/api/apps/{app}/canary", json={"canary": other, "weight": 30})
    assert r.status_code == 200 and r.json()["canary"] == {"app": other, "weight": 30}

    # Someone else's app can be neither the canary nor the target.
    stranger = shipway_server.signup()
    theirs = _app(stranger)
    r = stranger.api.put(f"/api/apps/{theirs}/canary", json={"canary": app, "weight": 10})
    assert r.status_code == 404, r.text
    assert stranger.api.put(f"/api/apps/{app}/maintenance",
                            json={"maintenance": False}).status_code == 404

    assert api.delete(f"/api/apps/{app}/canary").json()["canary"] is None
    # A destroyed app's states go with it (a new app of the same name has none).
    assert api.delete(f"/api/apps/{app}").status_code == 200
    assert api.post("/api/apps", json={"name": app}).status_code == 201
    assert api.get(f"/api/apps/{app}/maintenance").json()["maintenance"] is False
