"""The certs API handlers (controller/api_certs.py, issue 16 item 3) over a
real store on SQLite and PostgreSQL: who may refresh, which names, ACME off,
the activity record, a second refresh within the interval refused (429 with
Retry-After seconds), and `certs` showing the object `domains --json`
shows. The limits per rolling hour (account-wide, per owner) are
test_cert_refresh_limits.py's."""
from __future__ import annotations

import datetime as dt
import types
from typing import Any

import pytest
import sqlalchemy as sa

from controller.api_apps import list_domains
from controller.api_certs import list_certs, refresh_certs
from controller.api_views import Call
from controller.certificates import CertificateStore, certificates
from controller.errors import Conflict, NotFound, TooManyRequests
from controller.http_errors import http_status

ACME = {"acme_directory": "https://acme.invalid/directory", "base_domain": "shipway.test"}


def _call(store, user, handler, body: dict | None = None, app: str = "demo-app") -> Any:
    services = types.SimpleNamespace(settings=store.settings, controller=store)
    return handler(Call(services=services, user=user, params={"app": app},
                        body=body if body is not None else {}))


def _age(store, minutes: int) -> None:
    """As if every name's last attempt or refresh were `minutes` older."""
    with store.db.write() as conn:
        for row in conn.execute(sa.select(certificates.c.hostname, certificates.c.updated_at)):
            conn.execute(certificates.update().where(certificates.c.hostname == row.hostname)
                         .values(updated_at=row.updated_at - dt.timedelta(minutes=minutes)))


@pytest.fixture
def world(open_store):
    store = open_store(**ACME)
    owner = store.signup("owner@example.com", "owner-password")[0]
    collab = store.signup("collab@example.com", "collab-password")[0]
    stranger = store.signup("stranger@example.com", "stranger-password")[0]
    app = store.create_app(owner, "demo-app")
    store.add_collaborator(owner, "demo-app", collab.email)
    store.add_domain(owner, "demo-app", "www.custom.example")
    return types.SimpleNamespace(store=store, owner=owner, collab=collab, stranger=stranger,
                                 app=app)


def test_refresh_queues_every_routed_name_and_is_recorded(world) -> None:
    store = world.store
    certs = CertificateStore(store.db, store.keyring)
    certs.reconcile({"demo-app.shipway.test": world.app.id, "www.custom.example": world.app.id})
    certs.record_failure("www.custom.example", "DNS points elsewhere")
    _age(store, 11)  # past the 10 minutes a failed attempt holds a refresh off
    answer = _call(store, world.collab, refresh_certs)
    assert [(q["hostname"], q["action"], q["certificate"]["status"]) for q in answer["queued"]] \
        == [("demo-app.shipway.test", "retry", "pending"), ("www.custom.example", "retry", "pending")]
    assert sorted(certs.due()) == ["demo-app.shipway.test", "www.custom.example"]
    done = store.list_activity(world.owner, "demo-app", 1)[0]
    assert (done.actor, done.action) == ("collab@example.com", "certs:auto:refresh")
    assert done.detail == {"hostnames": ["demo-app.shipway.test", "www.custom.example"]}


def test_a_second_refresh_within_the_interval_is_429_then_passes(world) -> None:
    store = world.store
    assert store.settings.cert_refresh_interval == 600  # the default
    _call(store, world.owner, refresh_certs)
    for body in ({}, {"hostname": "www.custom.example"}):
        with pytest.raises(TooManyRequests) as e:
            _call(store, world.collab, refresh_certs, body)
        assert http_status(e.value) == 429
        assert 590 <= e.value.retry_after <= 600  # the API's Retry-After header
        said = e.value.message
        assert "\n" not in said and "www.custom.example" in said and "try again after" in said
    actions = [a.action for a in store.list_activity(world.owner, "demo-app", 10)]
    assert actions.count("certs:auto:refresh") == 1  # the refused ones changed nothing
    _age(store, 9)
    with pytest.raises(TooManyRequests) as e:
        _call(store, world.owner, refresh_certs)
    assert 50 <= e.value.retry_after <= 60
    _age(store, 1)
    answer = _call(store, world.owner, refresh_certs)
    assert [q["action"] for q in answer["queued"]] == ["retry", "retry"]


def test_the_interval_is_a_setting(open_store) -> None:
    store = open_store(cert_refresh_interval=0, **ACME)
    owner = store.signup("owner@example.com", "owner-password")[0]
    store.create_app(owner, "demo-app")
    for _ in range(2):
        assert _call(store, owner, refresh_certs)["queued"][0]["action"] in ("issue", "retry")


def test_refresh_of_one_name(world) -> None:
    answer = _call(world.store, world.owner, refresh_certs, {"hostname": "WWW.Custom.Example."})
    assert [q["hostname"] for q in answer["queued"]] == ["www.custom.example"]


def test_a_stranger_is_refused_and_nothing_is_queued(world) -> None:
    with pytest.raises(NotFound) as e:
        _call(world.store, world.stranger, refresh_certs)
    assert http_status(e.value) == 404
    with pytest.raises(NotFound):
        _call(world.store, world.stranger, list_certs)
    store = world.store
    assert CertificateStore(store.db, store.keyring).statuses(["demo-app.shipway.test"]) == {}
    assert store.list_activity(world.owner, "demo-app", 1)[0].action != "certs:auto:refresh"


@pytest.mark.parametrize("name", ["other.example", "demo-app2.shipway.test"])
def test_a_name_not_the_apps_is_refused(world, name: str) -> None:
    other = world.store.create_app(world.owner, "demo-app2")
    world.store.add_domain(world.owner, other.name, "other.example")
    with pytest.raises(NotFound) as e:
        _call(world.store, world.owner, refresh_certs, {"hostname": name})
    assert http_status(e.value) == 404 and "demo-app has no domain" in e.value.message


def test_an_unverified_domain_is_refused(open_store) -> None:
    store = open_store(domain_verify="dns", **ACME)
    owner = store.signup("owner@example.com", "owner-password")[0]
    store.create_app(owner, "demo-app")
    store.add_domain(owner, "demo-app", "www.custom.example")
    with pytest.raises(Conflict, match="not verified"):
        _call(store, owner, refresh_certs, {"hostname": "www.custom.example"})


def test_acme_off_is_a_clear_error(open_store) -> None:
    store = open_store(base_domain="shipway.test")
    owner = store.signup("owner@example.com", "owner-password")[0]
    store.create_app(owner, "demo-app")
    with pytest.raises(Conflict) as e:
        _call(store, owner, refresh_certs)
    assert http_status(e.value) == 409 and "SHIPWAY_ACME_DIRECTORY" in e.value.message
    assert "\n" not in e.value.message
    assert _call(store, owner, list_certs) == [
        {"hostname": "demo-app.shipway.test", "certificate": None}]


def test_certs_shows_what_domains_shows(world) -> None:
    store = world.store
    certs = CertificateStore(store.db, store.keyring)
    certs.reconcile({"demo-app.shipway.test": world.app.id, "www.custom.example": world.app.id})
    certs.record_failure("www.custom.example", "rate limited")
    shown = {c["hostname"]: c["certificate"] for c in _call(store, world.owner, list_certs)}
    domains = {d["hostname"]: d["certificate"] for d in _call(store, world.owner, list_domains)}
    assert shown["www.custom.example"] == domains["www.custom.example"]
    assert shown["www.custom.example"]["error"] == "rate limited"
    assert shown["demo-app.shipway.test"] == {"status": "pending", "not_after": None,
                                              "error": None}

