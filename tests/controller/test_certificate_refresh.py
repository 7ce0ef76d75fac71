"""certs:auto:refresh in the certificates store (issue 16 item 3), on SQLite
and PostgreSQL: a refresh clears a failed name's backoff, forces the renewal
of an issued one whose old certificate is kept (stored and loadable) until
the new one is stored, and wakes the manager to try at once."""
from __future__ import annotations

import datetime as dt
import time

import sqlalchemy as sa

from controller.certificates import CertificateManager, CertificateStore, certificates
from router.acme import ACMEClient, Issued, new_account_key_pem
from tests.conftest import free_port

HOST = "www.example.com"
LATER = dt.timedelta(days=30)


def _issued(n: int) -> Issued:
    """A stored certificate's shape: the store keeps, encrypts and returns
    the PEM text; it never parses it."""
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    return Issued(hostname=HOST, fullchain_pem=f"CHAIN-{n}\n", key_pem=f"KEY-{n}\n",
                  not_before=start, not_after=start + dt.timedelta(days=90))


def _row(certs: CertificateStore, host: str = HOST):
    with certs.db.read() as conn:
        return conn.execute(sa.select(certificates).where(certificates.c.hostname == host)).one()


def _refresh(certs: CertificateStore, app_id: int, names: list[str]) -> dict[str, str]:
    with certs.db.write() as conn:
        return certs.refresh(conn, app_id, names)


def test_refresh_clears_the_backoff_of_a_failed_name(store, app) -> None:
    certs = CertificateStore(store.db, store.keyring, retry_seconds=60)
    certs.want(app.id, [HOST])
    for _ in range(5):  # backoff now 60 s * 2**4
        certs.record_failure(HOST, "DNS points elsewhere")
    assert certs.due() == []
    assert _row(certs).failures == 5
    assert _refresh(certs, app.id, [HOST]) == {HOST: "retry"}
    assert certs.due() == [HOST]
    row = _row(certs)
    assert (row.status, row.failures, row.error) == ("pending", 0, None)
    # A new failure starts the backoff again from its first delay.
    certs.record_failure(HOST, "still wrong")
    assert _row(certs).next_attempt_at <= dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=61)


def test_refresh_forces_a_renewal_that_keeps_the_old_certificate_until_the_new(store, app) -> None:
    certs = CertificateStore(store.db, store.keyring)
    certs.want(app.id, [HOST])
    assert certs.record_issued(_issued(1))
    assert certs.due() == [] and certs.due(dt.datetime.now(dt.timezone.utc) + LATER) == []
    assert _refresh(certs, app.id, [HOST]) == {HOST: "renew"}
    assert certs.due() == [HOST]
    # Queued, and until a new one is stored the old one is what is served.
    assert certs.statuses([HOST])[HOST].status == "issued"
    assert certs.issued() == {HOST: "CHAIN-1\nKEY-1\n"}
    # A failed forced renewal never drops it: still issued, still loaded.
    certs.record_failure(HOST, "rate limited")
    st = certs.statuses([HOST])[HOST]
    assert (st.status, st.error) == ("issued", "rate limited")
    assert certs.issued() == {HOST: "CHAIN-1\nKEY-1\n"}
    _refresh(certs, app.id, [HOST])
    assert certs.record_issued(_issued(2))
    assert certs.issued() == {HOST: "CHAIN-2\nKEY-2\n"}
    assert certs.due() == []  # done: not renewed again until 2/3 of its lifetime


def test_refresh_of_a_name_not_seen_yet_adds_it_pending(store, app) -> None:
    certs = CertificateStore(store.db, store.keyring)
    assert _refresh(certs, app.id, ["new.example.com"]) == {"new.example.com": "issue"}
    assert certs.statuses(["new.example.com"])["new.example.com"].status == "pending"
    assert certs.due() == ["new.example.com"]


class _Responder:
    """Where HTTP-01 answers would go (the router's TLS side); this ACME
    server is never reached, so none are."""

    def __init__(self) -> None:
        self.installed: list[str] = []

    def install(self, hostname: str, pem: str) -> None:
        self.installed.append(hostname)

    def remove(self, hostname: str) -> None: ...

    def add_challenge(self, token: str, key_authorization: str) -> None: ...

    def remove_challenge(self, token: str) -> None: ...


def test_wake_tries_a_refreshed_name_at_once(store, app) -> None:
    certs = CertificateStore(store.db, store.keyring)
    certs.want(app.id, [HOST])
    certs.record_failure(HOST, "DNS points elsewhere")
    directory = f"http://127.0.0.1:{free_port()}/dir"  # a real client; nothing listens there
    manager = CertificateManager(certs, _Responder(),
                                 lambda: ACMEClient(directory, new_account_key_pem(), timeout=5))
    _refresh(certs, app.id, [HOST])
    manager.wake()  # no tick() here: the manager's own thread tries
    deadline = time.monotonic() + 30
    while _row(certs).failures == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    row = _row(certs)
    assert row.failures == 1 and directory in row.error  # it tried, and the try failed
