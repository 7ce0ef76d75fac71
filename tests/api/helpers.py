"""Shared by the API tests: a "world" (owner, collaborator, stranger, one
app) and fresh SSH public keys."""
from __future__ import annotations

from typing import Any

import attrs
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.conftest import ShipwayServer, TestUser, unique


def new_public_key(comment: str = "test@example") -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    text = key.public_bytes(serialization.Encoding.OpenSSH,
                            serialization.PublicFormat.OpenSSH).decode()
    return f"{text} {comment}"


@attrs.define
class World:
    server: ShipwayServer
    owner: TestUser
    collab: TestUser
    other: TestUser
    app: str

    def user(self, role: str) -> TestUser:
        return {"owner": self.owner, "collab": self.collab, "other": self.other}[role]


def make_world(server: ShipwayServer) -> World:
    owner, collab, other = server.signup(), server.signup(), server.signup()
    app = unique("app")
    assert owner.api.post("/api/apps", json={"name": app}).status_code == 201
    r = owner.api.post(f"/api/apps/{app}/collaborators", json={"email": collab.email})
    assert r.status_code == 201, r.text
    return World(server, owner, collab, other, app)


def assert_json_error(r: Any, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["code"] == status and isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in r.text
    return body


def snapshot(w: World) -> dict[str, Any]:
    """Everything a bad request might have changed."""
    api, app = w.owner.api, w.app
    return {
        "apps": [a["name"] for a in api.get("/api/apps").json()],
        "collab_apps": [a["name"] for a in w.collab.api.get("/api/apps").json()],
        "other_keys": w.other.api.get("/api/account/ssh_keys").json(),
        "collab_keys": w.collab.api.get("/api/account/ssh_keys").json(),
        "config": api.get(f"/api/apps/{app}/config").json(),
        "releases": api.get(f"/api/apps/{app}/releases").json(),
        "domains": api.get(f"/api/apps/{app}/domains").json(),
        "collaborators": api.get(f"/api/apps/{app}/collaborators").json(),
        "keys": api.get("/api/account/ssh_keys").json(),
        "info": api.get(f"/api/apps/{app}").json(),
        "account": api.get("/api/account").status_code,
    }
