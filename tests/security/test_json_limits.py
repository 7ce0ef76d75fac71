"""Finding 8: a JSON body nested 200,000 deep was a 500 (RecursionError in
the server's log). Now a 400 with a clear message, and the server stays
healthy."""
from __future__ import annotations

import requests

from tests.conftest import ShipwayServer


def test_deeply_nested_json_is_a_400(shipway_server: ShipwayServer) -> None:
    user = shipway_server.signup()
    depth = 200_000
    body = b'{"name":' + b"[" * depth + b"]" * depth + b"}"  # 400 KB, under the size limit
    for path in ("/api/apps", "/api/login"):
        r = requests.post(shipway_server.url + path, data=body, timeout=30,
                          headers={"Authorization": f"Bearer {user.api_key}",
                                   "Content-Type": "application/json"})
        assert r.status_code == 400, (path, r.status_code, r.text)
        assert "nested too deeply" in r.json()["error"]
    # Deep, but well under Python's recursion limit: refused too.
    shallow = b'{"name":' + b"[" * 500 + b"]" * 500 + b"}"
    r = user.api.post("/api/apps", data=shallow, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "nested too deeply" in r.json()["error"]
    assert requests.get(shipway_server.url + "/api/health", timeout=5).json() == {"ok": True}
    assert user.api.get("/api/account").status_code == 200
    assert "RecursionError" not in shipway_server.log()
