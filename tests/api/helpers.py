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
