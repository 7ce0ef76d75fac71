"""The registrable-domain rule and the DNS challenge at the service layer,
on SQLite and PostgreSQL (claims raced from two threads), with a real DNS
server (dnslib) for the challenge."""
from __future__ import annotations

import threading
from typing import Any, Callable

import pytest

from controller.domain_ownership import challenge_token, registrable_domain, txt_values
from controller.errors import BadRequest, Conflict
from controller.store import Store
from tests.security.test_domains import TxtZone


@pytest.mark.parametrize("host,expected", [
    ("www.a-corp.test", "a-corp.test"),
    ("a-corp.test", "a-corp.test"),
    ("x.y.z.a-corp.test", "a-corp.test"),
    ("shop.a.co.uk", "a.co.uk"),
    ("b.co.uk", "b.co.uk"),
    ("deep.shop.example.com", "example.com"),
    ("me.github.io", "me.github.io"),  # the list's private section
])
def test_registrable_domain(host: str, expected: str) -> None:
    assert registrable_domain(host) == expected


@pytest.mark.parametrize("suffix", ["co.uk", "github.io", "com"])
def test_a_public_suffix_is_no_registrable_domain(suffix: str) -> None:
    with pytest.raises(BadRequest, match="public suffix"):
        registrable_domain(suffix)


def test_rule_and_release(store: Store) -> None:
    a = store.signup("a@example.com", "a-password")[0]
    b = store.signup("b@example.com", "b-password")[0]
    a_app, b_app = store.create_app(a, "a-app"), store.create_app(b, "b-app")
    store.add_domain(a, "a-app", "www.a-corp.test")
    with pytest.raises(Conflict, match=r"^a-corp.test belongs to another account$"):
        store.add_domain(b, "b-app", "new.a-corp.test")
    with pytest.raises(BadRequest, match="public suffix"):
        store.add_domain(b, "b-app", "co.uk")
    # Once A lets go of every name there, B may take the domain.
    store.remove_domain(a, "a-app", "www.a-corp.test")
    store.add_domain(b, "b-app", "a-corp.test")
    assert store.app_domains(b_app) == ["a-corp.test"]
    assert store.app_domains(a_app) == []


def test_two_accounts_racing_for_one_domain(store: Store) -> None:
    """The check and the insert are one step: of two accounts adding names
    of one registrable domain at once, one wins (PostgreSQL's row locks are
    per app, so claims queue on an advisory lock per domain)."""
    users = [store.signup(f"r{i}@example.com", "racer-password")[0] for i in range(2)]
    for i, user in enumerate(users):
        store.create_app(user, f"racer-{i}")
    for round_ in range(4):
        barrier = threading.Barrier(2)
        results: list[Any] = [None, None]

        def claim(i: int) -> None:
            barrier.wait()
            try:
                results[i] = store.add_domain(users[i], f"racer-{i}",
                                              f"n{i}.race{round_}.test")
            except Conflict as e:
                results[i] = e

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        won = [r for r in results if not isinstance(r, Conflict)]
        assert len(won) == 1, results


def test_dns_challenge(open_store: Callable[..., Store]) -> None:
    zone = TxtZone().start()
    try:
        store = open_store(domain_verify="dns", dns_server=f"127.0.0.1:{zone.port}")
        a = store.signup("a@example.com", "a-password")[0]
        b = store.signup("b@example.com", "b-password")[0]
        a_app, b_app = store.create_app(a, "a-app"), store.create_app(b, "b-app")
        domain = store.add_domain(a, "a-app", "www.e-corp.test")
        assert not domain.verified and store.app_domains(a_app) == []
        name, value = domain.challenge  # type: ignore[misc]
        assert value == challenge_token(store.api_key_secret, a_app.id, "www.e-corp.test")

        # B's token for the name published: it proves nothing for A's app.
        zone.records[name] = challenge_token(store.api_key_secret, b_app.id, "www.e-corp.test")
        with pytest.raises(BadRequest, match="another value"):
            store.verify_domain(a, "a-app", "www.e-corp.test")
        assert store.app_domains(a_app) == []
        other = store.add_domain(b, "b-app", "www.e-corp.test")
        assert other.challenge == (name, zone.records[name])
        # B's claim took the name over from A's unproven one; B proves it.
        assert store.verify_domain(b, "b-app", "www.e-corp.test").verified
        assert store.app_domains(b_app) == ["www.e-corp.test"]
        with pytest.raises(Conflict, match="e-corp.test belongs to another account"):
            store.add_domain(a, "a-app", "shop.e-corp.test")
        assert txt_values("missing.e-corp.test", f"127.0.0.1:{zone.port}")[1] == "no such name"
    finally:
        zone.stop()
