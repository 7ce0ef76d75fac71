"""Finding 8: 30 wrong passwords in 1.2 s, then the right one logged in.
Failed logins are now throttled per account and per client address (429
with Retry-After), the right password is refused during the lock, and every
path that checks a password or an API key shares the one throttle: API
login, Basic auth on the API, and git over HTTP."""
from __future__ import annotations

import base64
import http.client
import json
import time

import requests

from tests.conftest import ShipwayServer


def _login(server: ShipwayServer, email: str, password: str) -> requests.Response:
    return requests.post(server.url + "/api/login", json={"email": email, "password": password},
                         timeout=30)


def _basic(email: str, key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{email}:{key}".encode()).decode()}


def test_wrong_passwords_then_the_right_one_is_429_until_the_wait(make_server) -> None:
    server = make_server(env={"SHIPWAY_LOGIN_THROTTLE_ADDRESS_FAILURES": "1000"})
    victim = server.signup()
    codes = [_login(server, victim.email, f"wrong password {i}").status_code for i in range(30)]
    assert codes[:5] == [401] * 5, codes  # the first failures are ordinary refusals
    assert 429 in codes[5:] and codes.count(401) < 10, codes
    right = _login(server, victim.email, victim.password)
    assert right.status_code == 429, right.text
    wait = int(right.headers["Retry-After"])
    assert 1 <= wait <= 900 and "too many failed logins" in right.json()["error"]
    # The account lock is on its password: its API key (the CLI's and git's
    # credential, a long random secret) keeps working, so nobody who knows
    # an email can stop that user's pushes.
    api = requests.get(server.url + "/api/account", headers=_basic(victim.email, victim.api_key),
                       timeout=10)
    assert api.status_code == 200, api.text
    git = requests.get(f"{server.url}/whatever.git/info/refs?service=git-upload-pack",
                       auth=(victim.email, victim.api_key), timeout=10)
    assert git.status_code != 429, git.text
    # The lock ends: after the wait, the right password logs in.
    time.sleep(int(right.headers["Retry-After"]) + 0.2)
    ok = _login(server, victim.email, victim.password)
    assert ok.status_code == 200 and ok.json()["api_key"] == victim.api_key


def _login_from(server: ShipwayServer, source: str, email: str, password: str) -> int:
    """A login from another loopback address (all of 127/8 is this host)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30,
                                      source_address=(source, 0))
    try:
        conn.request("POST", "/api/login", body=json.dumps({"email": email, "password": password}),
                     headers={"Content-Type": "application/json"})
        return conn.getresponse().status
    finally:
        conn.close()


def test_wrong_api_keys_over_git_http_lock_the_address_not_the_account(make_server) -> None:
    server = make_server(env={"SHIPWAY_LOGIN_THROTTLE_ADDRESS_FAILURES": "5"})
    victim = server.signup()
    url = f"{server.url}/whatever.git/info/refs?service=git-receive-pack"
    codes = [requests.get(url, auth=(victim.email, f"sw_guess{i}"), timeout=10).status_code
             for i in range(8)]
    assert codes[:5] == [401] * 5 and codes[-1] == 429, codes
    r = _login(server, victim.email, victim.password)  # the guessing address is locked
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    # The victim, elsewhere, is not: the guesses never locked the account.
    assert _login_from(server, "127.0.0.2", victim.email, victim.password) == 200


def test_one_address_failing_on_many_accounts_is_throttled(make_server) -> None:
    server = make_server(env={"SHIPWAY_LOGIN_THROTTLE_ADDRESS_FAILURES": "10"})
    users = [server.signup() for _ in range(3)]
    # One wrong password per account (never an account's own lock), from
    # one address: the address is locked after 10.
    codes = []
    for i in range(12):
        target = users[i % 3].email if i < 3 else f"nobody{i}@example.com"
        codes.append(_login(server, target, "wrong password").status_code)
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429], codes
    # Even a right password of an account never guessed at is refused from it.
    fresh = _login(server, users[2].email, users[2].password)
    assert fresh.status_code == 429 and int(fresh.headers["Retry-After"]) >= 1
    bearer = requests.get(server.url + "/api/account", timeout=10,
                          headers={"Authorization": f"Bearer {users[1].api_key}"})
    assert bearer.status_code == 429
