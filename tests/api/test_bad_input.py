"""Bad input on every endpoint gets a clear JSON error and changes nothing:
malformed and non-object JSON, bodies over the limit, wrong types, invalid
names, invalid SSH keys, unknown apps, unknown routes and methods."""
from __future__ import annotations

from typing import Any

import pytest
import requests

from controller.api_routes import ROUTES, Route
from tests.api.helpers import World, assert_json_error, make_world, new_public_key, snapshot
from tests.conftest import unique

LIMIT = 1024 * 1024  # Limits.request_body_bytes default


@pytest.fixture(scope="module")
def world(shipway_server) -> World:
    """One world for the module: every test here must leave it as it found it
    (that is what they check), so sharing it is safe and keeps the run short."""
    return make_world(shipway_server)


def concrete(route: Route, app: str) -> str:
    return "/api" + route.path.format(app=app, key="1", hostname="x.example.com",
                                      email="x@example.com",
                                      drain="1",  # issue 18 item 4
                                      container="a" * 64,  # issue 18 item 2
                                      version="1", webhook="1")  # issue 18 items 5, 7


BODY_ROUTES = [r for r in ROUTES if r.body]


@pytest.mark.parametrize("route", BODY_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_malformed_and_non_object_json(shipway_server, world: World, route: Route) -> None:
    before = snapshot(world)
    path = concrete(route, world.app)
    headers = {"Content-Type": "application/json"}
    for raw in (b"{not json", b'{"a": ', b"\xff\xfe", b"[1, 2]", b'"text"', b"42", b"null"):
        r = world.owner.api.request(route.method, path, data=raw, headers=headers)
        body = assert_json_error(r, 400)
        assert "JSON" in body["error"]
    assert snapshot(world) == before


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_body_over_the_limit_is_413(shipway_server, world: World, route: Route) -> None:
    before = snapshot(world)
    r = world.owner.api.request(route.method, concrete(route, world.app),
                                data=b"{" + b" " * LIMIT + b"}")
    assert_json_error(r, 413)
    assert snapshot(world) == before


def test_chunked_body_over_the_limit_is_413(shipway_server, world: World) -> None:
    """No Content-Length to trust: the real length is checked too."""
    def chunks():
        yield b'{"A": "'
        for _ in range(LIMIT // 65536 + 1):
            yield b"x" * 65536
        yield b'"}'

    before = snapshot(world)
    r = world.owner.api.patch(f"/api/apps/{world.app}/config", data=chunks())
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert_json_error(r, 413)
    assert snapshot(world) == before


def test_lying_content_length_is_rejected(shipway_server) -> None:
    r = requests.post(shipway_server.url + "/api/users", data=b"{}",
                      headers={"Content-Length": "not-a-number"}, timeout=30)
    assert r.status_code == 400


@pytest.mark.parametrize("name", ["A", "-abc", "abc-", "Has_Underscore", "a" * 64, "with space",
                                  "ab--cd", "1abc", "ünïcode", 5, ["x"], {"n": 1}, True])
def test_invalid_app_names(shipway_server, world: World, name: Any) -> None:
    before = snapshot(world)
    body = assert_json_error(world.owner.api.post("/api/apps", json={"name": name}), 400)
    assert "name" in body["error"]
    assert snapshot(world) == before


def test_taken_app_name_is_409(shipway_server, world: World) -> None:
    before = snapshot(world)
    assert_json_error(world.other.api.post("/api/apps", json={"name": world.app}), 409)
    assert snapshot(world) == before


@pytest.mark.parametrize("key", [
    "", "ssh-ed25519", "ssh-ed25519 not!base64", "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIA== x",
    "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----",
    "ssh-dss AAAAB3NzaC1kc3MAAACBAP== x", "x" * 20000, 17, None, ["ssh-ed25519 AAAA"],
])
def test_invalid_ssh_keys(shipway_server, world: World, key: Any) -> None:
    before = snapshot(world)
    assert_json_error(world.owner.api.post("/api/account/ssh_keys", json={"key": key}), 400)
    assert snapshot(world) == before


def test_ssh_key_of_another_user_is_409(shipway_server, world: World) -> None:
    key = new_public_key()
    assert world.other.api.post("/api/account/ssh_keys", json={"key": key}).status_code == 201
    before = snapshot(world)
    assert_json_error(world.owner.api.post("/api/account/ssh_keys", json={"key": key}), 409)
    assert snapshot(world) == before


def test_remove_ssh_key_by_fingerprint(shipway_server, world: World) -> None:
    r = world.owner.api.post("/api/account/ssh_keys", json={"key": new_public_key()})
    fingerprint = r.json()["fingerprint"]
    assert fingerprint.startswith("SHA256:")
    from urllib.parse import quote

    r = world.owner.api.delete("/api/account/ssh_keys/" + quote(fingerprint, safe=""))
    assert r.status_code == 200, r.text
    assert world.owner.api.get("/api/account/ssh_keys").json() == []
    assert_json_error(world.owner.api.delete("/api/account/ssh_keys/" + quote(fingerprint, safe="")), 404)


APP_ROUTES = [r for r in ROUTES if "{app}" in r.path]
VALID_BODY = {
    "/apps/{app}/config": {"PATCH": {"A": "1"}, "DELETE": {"keys": ["A"]}},
    "/apps/{app}/formation": {"PUT": {"web": 1}},
    "/apps/{app}/size": {"PUT": {"size": 1}},
    "/apps/{app}/domains": {"POST": {"hostname": "a.example.com"}},
    "/apps/{app}/collaborators": {"POST": {"email": "x@example.com"}},
    "/apps/{app}/maintenance": {"PUT": {"maintenance": True}},  # issue 16
    "/apps/{app}/canary": {"PUT": {"canary": "other", "weight": 5}},  # issue 16
    "/apps/{app}/drains": {"POST": {"url": "syslog://logs.example.com:514"}},  # issue 18
    "/apps/{app}/webhooks": {"POST": {"url": "https://hooks.example.com/x"}},  # issue 18
}


@pytest.mark.parametrize("route", APP_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_unknown_app_is_404(shipway_server, world: World, route: Route) -> None:
    before = snapshot(world)
    missing = unique("nosuch")
    body = VALID_BODY.get(route.path, {}).get(route.method)
    r = world.owner.api.request(route.method, concrete(route, missing), json=body)
    err = assert_json_error(r, 404)
    assert missing in err["error"]
    assert snapshot(world) == before


@pytest.mark.parametrize("method,path,body", [
    ("PATCH", "/config", {}),
    ("PATCH", "/config", {"A": 1}),
    ("PATCH", "/config", {"A": None}),
    ("PATCH", "/config", {"A": ["x"]}),
    ("PATCH", "/config", {"1BAD": "x"}),
    ("PATCH", "/config", {"BAD NAME": "x"}),
    ("PATCH", "/config", {"FOO\n": "x"}),      # a trailing newline: not a name
    ("PATCH", "/config", {"PORT\n": "1"}),
    ("PUT", "/formation", {"web\n": 1}),
    ("POST", "/domains", {"hostname": "a\n.example.com"}),
    ("POST", "/domains", {"hostname": "probe.shipway.invalid"}),  # reserved
    ("POST", "/releases/rollback", {"version": 10**20}),
    ("DELETE", "/config", {}),
    ("DELETE", "/config", {"keys": "A"}),
    ("DELETE", "/config", {"keys": []}),
    ("DELETE", "/config", {"keys": [1]}),
    ("PUT", "/formation", {}),
    ("PUT", "/formation", {"web": "2"}),
    ("PUT", "/formation", {"web": -1}),
    ("PUT", "/formation", {"web": True}),
    ("PUT", "/formation", {"web": 1.5}),
    ("PUT", "/formation", {"web": 100000}),
    ("PUT", "/formation", {"Bad Type!": 1}),
    ("PUT", "/size", {}),
    ("PUT", "/size", {"size": "1"}),
    ("PUT", "/size", {"size": True}),
    ("PUT", "/size", {"size": 0}),
    ("PUT", "/size", {"size": 0.05}),
    ("PUT", "/size", {"size": -1}),
    ("PUT", "/size", {"size": 9}),
    ("PUT", "/size", {"size": 1e308}),
    ("POST", "/releases/rollback", {"version": "x"}),
    ("POST", "/releases/rollback", {"version": 0}),
    ("POST", "/releases/rollback", {"version": True}),
    ("POST", "/domains", {}),
    ("POST", "/domains", {"hostname": 5}),
    ("POST", "/domains", {"hostname": "not a host!"}),
    ("POST", "/domains", {"hostname": "-bad-.example.com"}),
    ("POST", "/collaborators", {}),
    ("POST", "/collaborators", {"email": 5}),
    ("POST", "/collaborators", {"email": "not-an-email"}),
])
def test_wrong_types_and_invalid_values(shipway_server, world: World, method: str, path: str,
                                        body: dict) -> None:
    before = snapshot(world)
    r = world.owner.api.request(method, f"/api/apps/{world.app}{path}", json=body)
    assert_json_error(r, 400)
    assert snapshot(world) == before


def test_config_over_its_limit_is_413(shipway_server, world: World) -> None:
    before = snapshot(world)
    r = world.owner.api.patch(f"/api/apps/{world.app}/config", json={"BIG": "x" * (40 * 1024)})
    assert "limit" in assert_json_error(r, 413)["error"]
    assert snapshot(world) == before


def test_collaborator_rules(shipway_server, world: World) -> None:
    before = snapshot(world)
    api = world.owner.api
    path = f"/api/apps/{world.app}/collaborators"
    assert_json_error(api.post(path, json={"email": f"{unique('n')}@example.com"}), 404)
    assert_json_error(api.post(path, json={"email": world.collab.email}), 409)
    assert_json_error(api.post(path, json={"email": world.owner.email}), 400)
    assert_json_error(api.delete(f"{path}/{world.other.email}"), 404)
    assert snapshot(world) == before


@pytest.mark.parametrize("body", [{}, {"email": "x@example.com"}, {"password": "long enough pw"},
                                  {"email": 5, "password": "long enough pw"},
                                  {"email": "not-an-email", "password": "long enough pw"},
                                  {"email": "a@example.com", "password": "short"},
                                  {"email": "a@example.com", "password": ["x"]}])
def test_bad_signup(shipway_server, body: dict) -> None:
    assert_json_error(shipway_server.api().post("/api/users", json=body), 400)


def test_duplicate_signup_and_bad_login(shipway_server, world: World) -> None:
    api = shipway_server.api()
    assert_json_error(api.post("/api/users", json={"email": world.owner.email,
                                                   "password": "another long pw"}), 409)
    assert_json_error(api.post("/api/login", json={"email": world.owner.email,
                                                   "password": "wrong password"}), 401)
    assert_json_error(api.post("/api/login", json={"email": f"{unique('n')}@example.com",
                                                   "password": "wrong password"}), 401)
    # The original password still works and the key is unchanged.
    r = api.post("/api/login", json={"email": world.owner.email, "password": world.owner.password})
    assert r.status_code == 200 and r.json()["api_key"] == world.owner.api_key


def test_unknown_route_and_wrong_method(shipway_server, world: World) -> None:
    api = world.owner.api
    for path in ("/api/nope", "/api/apps/x/y/z/w", f"/api/apps/{world.app}/nothing", "/api/"):
        assert_json_error(api.get(path), 404)
    r = api.put("/api/apps")
    assert_json_error(r, 405)
    assert r.headers["Allow"] == "GET, POST"
    r = api.post(f"/api/apps/{world.app}")
    assert_json_error(r, 405)
    assert r.headers["Allow"] == "DELETE, GET"
    # Method checks come before auth: no key needed to learn a path exists.
    assert_json_error(shipway_server.api().put("/api/health"), 405)


@pytest.mark.parametrize("lines", ["\u00b2", "0", "abc", "-1", "99999999999999999999"])
def test_log_lines_must_be_a_small_whole_number(shipway_server, world: World, lines: str) -> None:
    r = world.owner.api.get(f"/api/apps/{world.app}/logs", params={"lines": lines})
    assert "lines" in assert_json_error(r, 400)["error"]
    assert world.owner.api.get(f"/api/apps/{world.app}/logs",
                               params={"lines": "5"}).status_code == 200


def test_removing_an_unknown_ssh_key_id_is_404(shipway_server, world: World) -> None:
    for ident in ("99999999999999999999", "\u00b2"):
        assert_json_error(world.owner.api.delete(f"/api/account/ssh_keys/{ident}"), 404)
