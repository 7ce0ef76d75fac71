"""The auth matrix: every route of the table × (no key, wrong key, another
user, a collaborator, the owner), with the exact status each cell must get.

The table below must name every route (a test checks that), so a new
endpoint cannot ship without its row.
"""
from __future__ import annotations

import base64
from typing import Any, Callable

import pytest

from controller.api_routes import ROUTES, Route
from tests.api.helpers import World, assert_json_error, make_world, new_public_key, snapshot
from tests.conftest import unique

ROLES = ("none", "wrong", "other", "collab", "owner")
OK = "ok"  # the route's success status

Prepare = Callable[[World, str], tuple[str, Any]]


def fixed(path: str, body: Any = None) -> Prepare:
    return lambda w, role: (path.format(app=w.app), body)


def public(status: str | int = OK) -> dict[str, Any]:
    return {role: status for role in ROLES}


def account(status: str | int = OK) -> dict[str, Any]:
    return {"none": 401, "wrong": 401, "other": status, "collab": status, "owner": status}


def app_route(collab: str | int = OK, owner: str | int = OK) -> dict[str, Any]:
    return {"none": 401, "wrong": 401, "other": 404, "collab": collab, "owner": owner}


def _signup_body(w: World, role: str) -> tuple[str, Any]:
    return "/users", {"email": f"{unique('m')}@example.com", "password": "long enough pw"}


def _add_key(w: World, role: str) -> tuple[str, Any]:
    return "/account/ssh_keys", {"key": new_public_key()}


def _remove_key(w: World, role: str) -> tuple[str, Any]:
    acting = w.owner if role in ("none", "wrong") else w.user(role)
    r = acting.api.post("/api/account/ssh_keys", json={"key": new_public_key()})
    assert r.status_code == 201, r.text
    return f"/account/ssh_keys/{r.json()['id']}", None


def _fresh_app(w: World, role: str) -> tuple[str, Any]:
    name = unique("del")
    assert w.owner.api.post("/api/apps", json={"name": name}).status_code == 201
    r = w.owner.api.post(f"/api/apps/{name}/collaborators", json={"email": w.collab.email})
    assert r.status_code == 201
    return f"/apps/{name}", None


def _unset_config(w: World, role: str) -> tuple[str, Any]:
    key = f"K_{role.upper()}"
    r = w.owner.api.patch(f"/api/apps/{w.app}/config", json={key: "1"})
    assert r.status_code == 200, r.text
    return f"/apps/{w.app}/config", {"keys": [key]}


def _domain() -> str:
    """A name in a registrable domain of its own (apps of other owners on the
    shared server hold names too, and a registrable domain has one owner)."""
    return f"www.{unique('d')}.example"


def _add_domain(w: World, role: str) -> tuple[str, Any]:
    return f"/apps/{w.app}/domains", {"hostname": _domain()}


def _owned_domain(w: World) -> str:
    host = _domain()
    r = w.owner.api.post(f"/api/apps/{w.app}/domains", json={"hostname": host})
    assert r.status_code == 201, r.text
    assert host in [d["hostname"] for d in w.owner.api.get(f"/api/apps/{w.app}/domains").json()]
    return host


def _remove_domain(w: World, role: str) -> tuple[str, Any]:
    return f"/apps/{w.app}/domains/{_owned_domain(w)}", None


def _verify_domain(w: World, role: str) -> tuple[str, Any]:
    # Without SHIPWAY_DOMAIN_VERIFY a name is verified when added: idempotent.
    return f"/apps/{w.app}/domains/{_owned_domain(w)}/verify", None


def _add_collab(w: World, role: str) -> tuple[str, Any]:
    return f"/apps/{w.app}/collaborators", {"email": w.server.signup().email}


def _remove_collab(w: World, role: str) -> tuple[str, Any]:
    extra = w.server.signup()
    r = w.owner.api.post(f"/api/apps/{w.app}/collaborators", json={"email": extra.email})
    assert r.status_code == 201
    return f"/apps/{w.app}/collaborators/{extra.email}", None


CASES: dict[str, tuple[Prepare, dict[str, Any]]] = {
    "GET /health": (fixed("/health"), public()),
    "GET /openapi.json": (fixed("/openapi.json"), public()),
    "POST /users": (_signup_body, public()),
    "POST /login": (lambda w, r: ("/login", {"email": w.owner.email, "password": w.owner.password}),
                    public()),
    "GET /account": (fixed("/account"), account()),
    "POST /account/api_key": (fixed("/account/api_key"), account()),
    "GET /account/ssh_keys": (fixed("/account/ssh_keys"), account()),
    "POST /account/ssh_keys": (_add_key, account()),
    "DELETE /account/ssh_keys/{key}": (_remove_key, account()),
    "GET /apps": (fixed("/apps"), account()),
    "POST /apps": (lambda w, r: ("/apps", {"name": unique("new")}), account()),
    "GET /apps/{app}": (fixed("/apps/{app}"), app_route()),
    "DELETE /apps/{app}": (_fresh_app, app_route(collab=403)),
    "GET /apps/{app}/config": (fixed("/apps/{app}/config"), app_route()),
    "PATCH /apps/{app}/config": (fixed("/apps/{app}/config", {"FOO": "bar"}), app_route()),
    "DELETE /apps/{app}/config": (_unset_config, app_route()),
    "GET /apps/{app}/releases": (fixed("/apps/{app}/releases"), app_route()),
    # The app has no release yet: the permitted callers get the clear 400.
    "POST /apps/{app}/releases/rollback": (fixed("/apps/{app}/releases/rollback"),
                                           app_route(collab=400, owner=400)),
    "GET /apps/{app}/ps": (fixed("/apps/{app}/ps"), app_route()),
    "PUT /apps/{app}/formation": (fixed("/apps/{app}/formation", {"web": 1}),
                                  app_route()),
    "PUT /apps/{app}/size": (fixed("/apps/{app}/size", {"size": 0.5}), app_route()),
    "POST /apps/{app}/restart": (fixed("/apps/{app}/restart"), app_route()),
    # issue 18 items 1-2: one-offs of the current release (the world's app has
    # none yet, so an allowed caller gets the 409 that says to push first)
    "POST /apps/{app}/run": (fixed("/apps/{app}/run", {"command": "true"}), app_route(409, 409)),
    "POST /apps/{app}/migrate": (fixed("/apps/{app}/migrate"), app_route(409, 409)),
    "DELETE /apps/{app}/run/{container}": (fixed("/apps/{app}/run/" + "a" * 64),
                                           app_route(404, 404)),
    "GET /apps/{app}/domains": (fixed("/apps/{app}/domains"), app_route()),
    "POST /apps/{app}/domains": (_add_domain, app_route()),
    "DELETE /apps/{app}/domains/{hostname}": (_remove_domain, app_route()),
    "POST /apps/{app}/domains/{hostname}/verify": (_verify_domain, app_route()),
    # issue 16 item 3 (this server has no ACME directory: the permitted get the 409)
    "GET /apps/{app}/certs": (fixed("/apps/{app}/certs"), app_route()),
    "POST /apps/{app}/certs/refresh": (fixed("/apps/{app}/certs/refresh"),
                                       app_route(collab=409, owner=409)),
    "GET /apps/{app}/collaborators": (fixed("/apps/{app}/collaborators"), app_route()),
    "POST /apps/{app}/collaborators": (_add_collab, app_route(collab=403)),
    "DELETE /apps/{app}/collaborators/{email}": (_remove_collab, app_route(collab=403)),
    "GET /apps/{app}/builds": (fixed("/apps/{app}/builds"), app_route()),
    "GET /apps/{app}/logs": (fixed("/apps/{app}/logs"), app_route()),
    # issue 16, item 5 (the app as its own canary: the permitted get the 400)
    "GET /apps/{app}/maintenance": (fixed("/apps/{app}/maintenance"), app_route()),
    "PUT /apps/{app}/maintenance": (fixed("/apps/{app}/maintenance", {"maintenance": False}),
                                    app_route()),
    "PUT /apps/{app}/canary": (lambda w, r: (f"/apps/{w.app}/canary",
                                             {"canary": w.app, "weight": 10}),
                               app_route(collab=400, owner=400)),
    "DELETE /apps/{app}/canary": (fixed("/apps/{app}/canary"), app_route()),
    # issue 18, items 5 and 7 (no release v1 yet; a loopback webhook is refused)
    "GET /apps/{app}/activity": (fixed("/apps/{app}/activity"), app_route()),
    "GET /apps/{app}/releases/{version}": (fixed("/apps/{app}/releases/v1"),
                                           app_route(collab=404, owner=404)),
    "GET /apps/{app}/webhooks": (fixed("/apps/{app}/webhooks"), app_route()),
    "POST /apps/{app}/webhooks": (fixed("/apps/{app}/webhooks", {"url": "https://127.0.0.1/h"}),
                                  app_route(collab=400, owner=400)),
    "DELETE /apps/{app}/webhooks/{webhook}": (fixed("/apps/{app}/webhooks/999999"),
                                              app_route(collab=404, owner=404)),
    # issue 18, item 4 (a loopback drain is refused; no drain 999999)
    "GET /apps/{app}/drains": (fixed("/apps/{app}/drains"), app_route()),
    "POST /apps/{app}/drains": (fixed("/apps/{app}/drains", {"url": "syslog://127.0.0.1:1"}),
                                app_route(collab=400, owner=400)),
    "DELETE /apps/{app}/drains/{drain}": (fixed("/apps/{app}/drains/999999"),
                                          app_route(collab=404, owner=404)),
}


def route_key(route: Route) -> str:
    return f"{route.method} {route.path}"


def test_every_route_has_a_row() -> None:
    assert sorted(CASES) == sorted(route_key(r) for r in ROUTES)


def _headers(w: World, role: str, cell: int) -> dict[str, str]:
    if role == "none":
        return {}
    if role == "wrong":
        if cell % 2:
            bad = base64.b64encode(f"{w.owner.email}:not-the-key".encode()).decode()
            return {"Authorization": f"Basic {bad}"}
        return {"Authorization": "Bearer sw_not_a_real_key"}
    return {"Authorization": f"Bearer {w.user(role).api_key}"}


@pytest.mark.parametrize("route", ROUTES, ids=route_key)
def test_auth_matrix(shipway_server, route: Route) -> None:
    world = make_world(shipway_server)
    prepare, expected = CASES[route_key(route)]
    seen = {}
    for cell, role in enumerate(ROLES):
        path, body = prepare(world, role)
        kw: dict[str, Any] = {"headers": _headers(world, role, cell)}
        if body is not None:
            kw["json"] = body
        before = snapshot(world) if route.method != "GET" else None
        r = shipway_server.api().request(route.method, "/api" + path, **kw)
        want = expected[role]
        seen[role] = r.status_code
        want = route.status if want == OK else want
        if want >= 400:
            body_json = assert_json_error(r, want)
            if want == 401:
                assert r.headers["WWW-Authenticate"] == 'Basic realm="shipway"'
            assert body_json["code"] == want
            if before is not None:  # a refused change changed nothing
                assert snapshot(world) == before, (role, route.path)
        else:
            assert r.status_code == want, (role, r.status_code, r.text)
            assert r.headers["Content-Type"].startswith("application/json")
            data = r.json()
            if route.path == "/account/api_key":  # the old key is dead: keep using the world
                world.user(role).api_key = data["api_key"]
    assert set(seen) == set(ROLES)


def test_basic_auth_with_email_and_key(shipway_server) -> None:
    u = shipway_server.signup()
    token = base64.b64encode(f"{u.email}:{u.api_key}".encode()).decode()
    r = shipway_server.api().get("/api/account", headers={"Authorization": f"Basic {token}"})
    assert r.status_code == 200 and r.json()["email"] == u.email
    # `curl -u :KEY`: an empty user name means "the key alone".
    token = base64.b64encode(f":{u.api_key}".encode()).decode()
    r = shipway_server.api().get("/api/account", headers={"Authorization": f"Basic {token}"})
    assert r.status_code == 200 and r.json()["email"] == u.email
    # The key must belong to that email.
    other = shipway_server.signup()
    token = base64.b64encode(f"{other.email}:{u.api_key}".encode()).decode()
    r = shipway_server.api().get("/api/account", headers={"Authorization": f"Basic {token}"})
    assert_json_error(r, 401)


@pytest.mark.parametrize("header", ["Bearer", "Basic !!!notbase64", "Basic " +
                                    base64.b64encode(b"no-colon").decode(), "Token abc", "Bearer  "])
def test_malformed_authorization_is_401(shipway_server, header: str) -> None:
    r = shipway_server.api().get("/api/account", headers={"Authorization": header})
    assert_json_error(r, 401)
    assert r.headers["WWW-Authenticate"] == 'Basic realm="shipway"'


def test_reset_key_invalidates_the_old_one(shipway_server) -> None:
    u = shipway_server.signup()
    r = u.api.post("/api/account/api_key")
    assert r.status_code == 200
    new_key = r.json()["api_key"]
    assert new_key != u.api_key
    assert_json_error(u.api.get("/api/account"), 401)
    assert shipway_server.api(new_key).get("/api/account").status_code == 200
