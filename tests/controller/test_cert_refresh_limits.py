"""The bounds of certs:auto:refresh per rolling hour (controller/
certificates_refresh.py) through the API handler, over a real store on
SQLite and PostgreSQL: the account-wide limit across apps, owners and
server processes; the per-owner share that keeps one user from locking the
others out; automatic issuance and renewal neither counted nor blocked;
names that never fit as clear 409s; old rows pruned whatever the ACME
directory."""
from __future__ import annotations

import datetime as dt
import threading
import types

import pytest
import sqlalchemy as sa

from controller.api_certs import refresh_certs
from controller.certificates import CertificateStore
from controller.certificates_refresh import (AccountLimit, AccountLimitReached,
                                             OwnerShareReached, certificate_refreshes, refresh)
from controller.errors import Conflict, TooManyRequests
from controller.http_errors import http_status
from router.acme import Issued
from tests.controller.test_api_certs import ACME, _call

# The apps of _tenants, each its owner's: demo-app has two names.
APPS = {"a": "demo-app", "b": "demo-two", "c": "demo-three", "d": "demo-four"}


def _age_account(store, minutes: int) -> None:
    """As if every counted refresh were `minutes` older."""
    t = certificate_refreshes
    with store.db.write() as conn:
        for row in conn.execute(sa.select(t.c.id, t.c.at)).all():
            conn.execute(t.update().where(t.c.id == row.id)
                         .values(at=row.at - dt.timedelta(minutes=minutes)))


def _counted(store) -> int:
    with store.db.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(certificate_refreshes)
                            ).scalar_one()


def _tenants(open_store, per_hour: int):
    """A store whose names may be refreshed back to back (no per-name
    interval), so only the hourly bounds are in the way; four users, each
    owning one app of APPS (demo-app with a custom domain too)."""
    store = open_store(cert_refresh_interval=0, cert_refreshes_per_hour=per_hour, **ACME)
    users = {}
    for key, app in APPS.items():
        users[key] = store.signup(f"{key}@example.com", f"{key}-password-long")[0]
        store.create_app(users[key], app)
    store.add_domain(users["a"], "demo-app", "www.custom.example")
    return store, types.SimpleNamespace(**users)


def _refused(store, user, app: str, body: dict | None = None) -> TooManyRequests:
    with pytest.raises(TooManyRequests) as e:
        _call(store, user, refresh_certs, body, app=app)
    assert http_status(e.value) == 429 and "\n" not in e.value.message
    assert "try again after" in e.value.message
    return e.value


def test_the_account_wide_limit_counts_every_app_and_owner_in_a_rolling_hour(open_store) -> None:
    store, u = _tenants(open_store, per_hour=6)  # 2 per owner
    assert open_store().settings.cert_refreshes_per_hour == 30  # the default
    _call(store, u.a, refresh_certs, app="demo-app")  # two names
    _age_account(store, 20)
    for user, app in ((u.b, "demo-two"), (u.b, "demo-two"), (u.c, "demo-three")):
        _call(store, user, refresh_certs, app=app)  # 5 of 6, no owner past 2
    _call(store, u.c, refresh_certs, app="demo-three")  # the sixth
    refused = _refused(store, u.d, "demo-four")  # d has refreshed nothing yet
    assert type(refused) is AccountLimitReached
    assert "account-wide limit of 6" in refused.message and "per-user" not in refused.message
    # Until the oldest counted refresh (20 minutes old) leaves the hour.
    assert 39 * 60 <= refused.retry_after <= 40 * 60
    actions = [a.action for a in store.list_activity(u.d, "demo-four", 10)]
    assert "certs:auto:refresh" not in actions  # the refused one changed nothing
    _age_account(store, 41)  # a's two leave the hour: 4 of 6
    assert _call(store, u.d, refresh_certs, app="demo-four")["queued"]
    assert _call(store, u.a, refresh_certs, {"hostname": "www.custom.example"},
                 app="demo-app")["queued"]
    assert type(_refused(store, u.d, "demo-four")) is AccountLimitReached  # 6 of 6 again


def test_one_owner_past_their_share_leaves_the_others_room(open_store) -> None:
    store, u = _tenants(open_store, per_hour=6)  # 2 per owner
    store.add_collaborator(u.a, "demo-app", u.b.email)
    _call(store, u.a, refresh_certs, app="demo-app")  # a's two
    _age_account(store, 15)
    # The owner's share, whoever asks: b, a collaborator, spends a's.
    for user in (u.a, u.b):
        refused = _refused(store, user, "demo-app", {"hostname": "www.custom.example"})
        assert type(refused) is OwnerShareReached
        said = refused.message
        assert "per-user share of 2" in said and "account-wide" not in said
        assert 44 * 60 <= refused.retry_after <= 45 * 60
    # b's own app, and c's, are not held back by a: 6 of 6.
    for user, app in ((u.b, "demo-two"), (u.b, "demo-two"), (u.c, "demo-three"),
                      (u.c, "demo-three")):
        _call(store, user, refresh_certs, app=app)
    with store.db.read() as conn:
        owners = conn.execute(sa.select(certificate_refreshes.c.owner_id)).scalars().all()
    assert sorted(owners) == sorted([u.a.id] * 2 + [u.b.id] * 2 + [u.c.id] * 2)
    # The account total still applies, spent by several users together.
    assert type(_refused(store, u.d, "demo-four")) is AccountLimitReached
    _age_account(store, 46)  # a's leave the hour
    assert _call(store, u.a, refresh_certs, {"hostname": "www.custom.example"},
                 app="demo-app")["queued"]


def test_the_account_wide_limit_is_shared_by_two_servers_on_one_database(open_store) -> None:
    first, u = _tenants(open_store, per_hour=3)  # 1 per owner
    second = open_store(cert_refresh_interval=0, cert_refreshes_per_hour=3, **ACME)
    _call(first, u.b, refresh_certs, app="demo-two")
    _call(second, u.c, refresh_certs, app="demo-three")
    # A refresh counting the last one, not committed yet: the other
    # server's refresh of another owner's app waits for it, then sees it.
    app = first.get_app(u.a, "demo-app")
    raised: list[BaseException] = []
    with first.db.write() as conn:
        refresh(conn, app.id, ["www.custom.example"], dt.timedelta(0),
                account=AccountLimit(ACME["acme_directory"], 3, owner_id=u.a.id))

        def run() -> None:
            try:
                _call(second, u.d, refresh_certs, app="demo-four")
            except BaseException as e:  # noqa: BLE001 (asserted below)
                raised.append(e)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(1)  # bounded: it must still be waiting
        assert thread.is_alive()
    thread.join(30)
    assert [type(e).__name__ for e in raised] == ["AccountLimitReached"]
    assert _counted(first) == 3


def test_automatic_issuance_and_renewal_are_neither_counted_nor_blocked(open_store) -> None:
    store, u = _tenants(open_store, per_hour=1)
    app = store.get_app(u.a, "demo-app")
    certs = CertificateStore(store.db, store.keyring)
    certs.reconcile({"demo-app.shipway.test": app.id, "www.custom.example": app.id})
    certs.record_failure("www.custom.example", "DNS points elsewhere")
    _call(store, u.a, refresh_certs, {"hostname": "www.custom.example"})  # the hour's one
    with pytest.raises(TooManyRequests):
        _call(store, u.b, refresh_certs, app="demo-two")
    # The manager goes on: the name just added is due at once, its failed
    # try and its issuance are recorded, and the certificate is due for
    # renewal at two thirds of its lifetime; none of it is counted.
    host = "demo-app.shipway.test"
    assert host in certs.due()
    certs.record_failure(host, "timeout")
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    assert certs.record_issued(Issued(hostname=host, fullchain_pem="CHAIN\n", key_pem="KEY\n",
                                      not_before=start, not_after=start + dt.timedelta(days=90)))
    assert host not in certs.due() and host in certs.due(start + dt.timedelta(days=61))
    assert _counted(store) == 1


def test_more_names_than_the_limit_or_share_or_a_limit_of_0_is_a_clear_conflict(
        open_store) -> None:
    store, u = _tenants(open_store, per_hour=1)
    with pytest.raises(Conflict) as e:  # no Retry-After would ever help
        _call(store, u.a, refresh_certs)
    assert "2 names at once" in e.value.message and "--domain" in e.value.message
    assert _call(store, u.a, refresh_certs, {"hostname": "www.custom.example"})["queued"]
    shared = open_store(cert_refresh_interval=0, cert_refreshes_per_hour=5, **ACME)  # 1 each
    with pytest.raises(Conflict) as e:
        _call(shared, u.a, refresh_certs)
    assert "2 names at once" in e.value.message and "per-user share (1)" in e.value.message
    off = open_store(cert_refresh_interval=0, cert_refreshes_per_hour=0, **ACME)
    with pytest.raises(Conflict, match="refreshes are off"):
        _call(off, u.b, refresh_certs, app="demo-two")


def test_refreshes_older_than_the_hour_are_forgotten_whatever_the_directory(open_store) -> None:
    store, u = _tenants(open_store, per_hour=30)
    at = dt.datetime.now(dt.timezone.utc)
    with store.db.write() as conn:  # as left by a former ACME directory
        conn.execute(certificate_refreshes.insert(), [
            {"directory": "https://old.invalid/directory", "owner_id": u.a.id,
             "hostname": "old.example", "at": at - dt.timedelta(minutes=minutes)}
            for minutes in (61, 120, 59)])
    _call(store, u.b, refresh_certs, app="demo-two")
    with store.db.read() as conn:
        left = conn.execute(sa.select(certificate_refreshes.c.directory)).scalars().all()
    assert sorted(left) == [ACME["acme_directory"], "https://old.invalid/directory"]
