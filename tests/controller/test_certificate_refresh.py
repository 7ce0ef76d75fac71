"""certs:auto:refresh in the certificates store (issue 16 item 3), on SQLite
and PostgreSQL: a refresh clears a failed name's backoff (failures kept at
1, so it grows again), forces the renewal of an issued one whose old
certificate is kept (stored and loadable) until the new one is stored, is
refused for a name tried, refreshed or issued within the interval, changes
only this app's row, and wakes the manager (one thread, even when every
waker is paused inside the test-and-set window) to try at once."""
from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any, Callable

import pytest
import sqlalchemy as sa

from controller.certificates import CertificateManager, CertificateStore, certificates
from controller.certificates_refresh import RefreshTooSoon, Waker, refresh
from controller.http_errors import http_status
from router.acme import ACMEClient, Issued, new_account_key_pem
from tests.conftest import free_port

HOST = "www.example.com"
LATER = dt.timedelta(days=30)
WINDOW = dt.timedelta(minutes=10)


def _issued(n: int) -> Issued:
    """A stored certificate's shape: the store keeps, encrypts and returns
    the PEM text; it never parses it."""
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    return Issued(hostname=HOST, fullchain_pem=f"CHAIN-{n}\n", key_pem=f"KEY-{n}\n",
                  not_before=start, not_after=start + dt.timedelta(days=90))


def _row(certs: CertificateStore, host: str = HOST):
    with certs.db.read() as conn:
        return conn.execute(sa.select(certificates).where(certificates.c.hostname == host)).one()


def _refresh(certs: CertificateStore, app_id: int, names: list[str],
             at: dt.datetime | None = None, window: dt.timedelta = WINDOW) -> dict[str, str]:
    """A refresh at `at` (unless given, a window after now: past every
    earlier touch, so the tests are about what it does)."""
    with certs.db.write() as conn:
        return refresh(conn, app_id, names, window, at or _now() + window)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def test_refresh_clears_the_backoff_of_a_failed_name(store, app) -> None:
    certs = CertificateStore(store.db, store.keyring, retry_seconds=60)
    certs.want(app.id, [HOST])
    for _ in range(5):  # backoff now 60 s * 2**4
        certs.record_failure(HOST, "DNS points elsewhere")
    assert certs.due() == []
    assert _row(certs).failures == 5
    at = _now() + WINDOW
    assert _refresh(certs, app.id, [HOST], at) == {HOST: "retry"}
    assert certs.due(at) == [HOST]
    row = _row(certs)
    assert (row.status, row.failures, row.error) == ("pending", 1, None)
    # A new failure waits twice the first delay (failures kept at 1, not
    # 0), and the backoff grows from there.
    certs.record_failure(HOST, "still wrong")
    wait = _row(certs).next_attempt_at - _now()
    assert dt.timedelta(seconds=100) < wait <= dt.timedelta(seconds=121)
    assert _row(certs).failures == 2


def test_refresh_forces_a_renewal_that_keeps_the_old_certificate_until_the_new(store, app) -> None:
    certs = CertificateStore(store.db, store.keyring)
    certs.want(app.id, [HOST])
    assert certs.record_issued(_issued(1))
    assert certs.due() == [] and certs.due(dt.datetime.now(dt.timezone.utc) + LATER) == []
    at = _now() + WINDOW
    assert _refresh(certs, app.id, [HOST], at) == {HOST: "renew"}
    assert certs.due(at) == [HOST]
    # Queued, and until a new one is stored the old one is what is served.
    assert certs.statuses([HOST])[HOST].status == "issued"
    assert certs.issued() == {HOST: "CHAIN-1\nKEY-1\n"}
    # A failed forced renewal never drops it: still issued, still loaded.
    certs.record_failure(HOST, "rate limited")
    st = certs.statuses([HOST])[HOST]
    assert (st.status, st.error) == ("issued", "rate limited")
    assert certs.issued() == {HOST: "CHAIN-1\nKEY-1\n"}
    _refresh(certs, app.id, [HOST], _now() + 2 * WINDOW)
    assert certs.record_issued(_issued(2))
    assert certs.issued() == {HOST: "CHAIN-2\nKEY-2\n"}
    assert certs.due() == []  # done: not renewed again until 2/3 of its lifetime


def test_refresh_of_a_name_not_seen_yet_adds_it_pending(store, app) -> None:
    certs = CertificateStore(store.db, store.keyring)
    assert _refresh(certs, app.id, ["new.example.com"], _now()) == {"new.example.com": "issue"}
    assert certs.statuses(["new.example.com"])["new.example.com"].status == "pending"
    assert certs.due() == ["new.example.com"]


def test_a_name_only_added_so_far_may_be_refreshed_at_once(store, app) -> None:
    certs = CertificateStore(store.db, store.keyring)
    certs.want(app.id, [HOST])  # never tried: no attempt to limit yet
    assert _refresh(certs, app.id, [HOST], _now()) == {HOST: "retry"}
    with pytest.raises(RefreshTooSoon):
        _refresh(certs, app.id, [HOST], _now())


@pytest.mark.parametrize("last", ["failed", "issued", "refreshed"])
def test_a_second_refresh_within_the_window_is_refused(store, app, last: str) -> None:
    certs = CertificateStore(store.db, store.keyring)
    certs.want(app.id, [HOST, "other.example.com"])
    if last == "failed":
        certs.record_failure(HOST, "DNS points elsewhere")
    elif last == "issued":  # issued just now: never renewed again within the window
        assert certs.record_issued(_issued(1))
    else:
        _refresh(certs, app.id, [HOST], _now())
    touched = _row(certs).updated_at
    before = {c.name: getattr(_row(certs), c.name) for c in certificates.columns}
    with pytest.raises(RefreshTooSoon) as e:
        _refresh(certs, app.id, [HOST, "other.example.com"], touched + WINDOW / 2)
    assert e.value.retry_after == 300
    assert "\n" not in e.value.message and HOST in e.value.message
    assert "other.example.com" not in e.value.message  # never tried: not the reason
    assert "10 min" in e.value.message and f"{touched + WINDOW:%H:%M:%S} UTC" in e.value.message
    assert {c.name: getattr(_row(certs), c.name) for c in certificates.columns} == before
    # Past the window it passes.
    action = {"failed": "retry", "issued": "renew", "refreshed": "retry"}[last]
    assert _refresh(certs, app.id, [HOST], touched + WINDOW)[HOST] == action


def test_refresh_changes_only_this_apps_row(store, app, owner) -> None:
    """A name still attributed to the app it came from (the manager's
    reconcile has not run yet) is not renewed under that app: it starts
    again as this app's, pending."""
    other = store.create_app(owner, "demo-old")
    certs = CertificateStore(store.db, store.keyring)
    certs.want(other.id, [HOST])
    assert certs.record_issued(_issued(1))
    assert _refresh(certs, app.id, [HOST]) == {HOST: "issue"}
    row = _row(certs)
    assert (row.app_id, row.status, row.fullchain_ct) == (app.id, "pending", None)
    assert certs.issued() == {}


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
    _refresh(certs, app.id, [HOST], _now(), window=dt.timedelta(0))  # due now
    manager.wake()  # no tick() here: the manager's own thread tries
    deadline = time.monotonic() + 30
    while _row(certs).failures == 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    row = _row(certs)
    assert row.failures == 2 and directory in row.error  # it tried, and the try failed


class _PausedWaker(Waker):
    """The fault injected below: reading the queued flag waits (up to 1 s)
    until every waker has read it, so all of them are inside the window
    between testing the flag and setting it whenever the code lets more than
    one in. With the flag tested and set under one lock, the first waits
    alone until the barrier breaks; after that nobody waits."""

    def __init__(self, tick: Callable[[], Any], busy: threading.Lock, wakers: int) -> None:
        self.window = threading.Barrier(wakers, timeout=1)
        self.reads: list[str] = []  # appended: atomic across threads, unlike +=
        super().__init__(tick, busy)

    @property  # type: ignore[override]
    def _queued(self) -> bool:
        self.reads.append(threading.current_thread().name)
        value = self._flag  # read, then paused before the caller acts on it
        try:
            self.window.wait()
        except threading.BrokenBarrierError:
            pass
        return value

    @_queued.setter
    def _queued(self, value: bool) -> None:
        self._flag = value


def test_concurrent_wakes_start_one_thread() -> None:
    busy = threading.Lock()  # the manager's tick lock
    ticks: list[str] = []
    waker = _PausedWaker(lambda: ticks.append(threading.current_thread().name), busy, 8)
    woken: list[bool] = []
    with busy:  # a tick under way: the woken thread waits, queued
        threads = [threading.Thread(target=lambda: woken.append(waker.wake())) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert len(waker.reads) >= 8  # every waker read the flag through the paused window
        assert sorted(woken) == [False] * 7 + [True]
    waker.window.abort()
    deadline = time.monotonic() + 10
    while not ticks and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # a second thread, had one started, ticks at once too
    assert ticks == ["certificates-wake"]
    deadline = time.monotonic() + 10  # once the tick ran, a wake queues again
    while not waker.wake() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert time.monotonic() < deadline


def test_a_name_added_by_the_server_meanwhile_is_a_conflict(store, app) -> None:
    """The manager's reconcile inserts the name while the refresh inserts
    it too: a Conflict (409), not an IntegrityError (500). Only PostgreSQL
    lets two writers interleave; SQLite's write transaction is exclusive."""
    if store.db.is_sqlite:
        pytest.skip("SQLite serialises writers: no interleaving to lose")
    certs = CertificateStore(store.db, store.keyring)
    raised: list[BaseException] = []
    with store.db.write() as other:  # the reconcile's transaction, not committed yet
        other.execute(certificates.insert().values(hostname=HOST, app_id=app.id,
                                                   status="pending", failures=0,
                                                   updated_at=_now()))

        def run() -> None:
            try:
                _refresh(certs, app.id, [HOST])
            except BaseException as e:  # noqa: BLE001 (asserted below)
                raised.append(e)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(1)  # its insert waits for ours (bounded: it must still be waiting)
        assert thread.is_alive()
    thread.join(30)
    assert [type(e).__name__ for e in raised] == ["Conflict"]
    assert http_status(raised[0]) == 409
