"""Issue 16, several processes: the issuance loop takes a cross-process
try-lock per hostname (core/locks.py), so two `shipway server`s sharing a
database never order the same certificate at once.

Two managers over one database, each with its own `Locks` over the same
lock directory (what two processes have: flock conflicts between open file
descriptions, even inside one process). The ACME client is a stand-in that
counts orders and is slow, so the two ticks overlap."""
from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

from controller.certificates import CertificateManager, CertificateStore, certificate_lock
from controller.store import open_controller
from core.locks import FileLockBackend, Locks
from core.settings import Settings
from router.acme import Issued

HOST = "www.custom.example"


class _Target:
    def __init__(self) -> None:
        self.installed: list[str] = []

    def install(self, hostname: str, pem: str) -> None:
        self.installed.append(hostname)

    def remove(self, hostname: str) -> None: ...


class _SlowACME:
    """Counts the orders of each name (shared by both 'processes')."""

    def __init__(self, orders: list[str], seconds: float) -> None:
        self.orders, self.seconds = orders, seconds

    def issue(self, hostname: str, target: object) -> Issued:
        self.orders.append(hostname)
        time.sleep(self.seconds)
        t = dt.datetime.now(dt.timezone.utc)
        return Issued(hostname, "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
                      "key", t, t + dt.timedelta(days=90))


def _world(tmp_path: Path, orders: list[str]):
    store = open_controller(Settings(data_dir=tmp_path / "ctl"))
    owner = store.signup("owner@example.com", "owner-password")[0]
    app = store.create_app(owner, "demo")
    certs = CertificateStore(store.db, store.keyring)
    certs.reconcile({HOST: app.id, "other.example": app.id})

    def manager() -> CertificateManager:
        locks = Locks(FileLockBackend(tmp_path / "locks"))  # one per process
        return CertificateManager(certs, _Target(), lambda: _SlowACME(orders, 0.5), locks)

    return store, certs, manager


def test_two_processes_never_order_one_name_at_once(tmp_path: Path) -> None:
    orders: list[str] = []
    store, certs, manager = _world(tmp_path, orders)
    a, b = manager(), manager()
    done: dict[str, list[str]] = {}
    threads = [threading.Thread(target=lambda m=m, k=k: done.__setitem__(k, m.tick()))
               for k, m in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(orders) == ["other.example", HOST]  # each name ordered once
    assert sorted(done["a"] + done["b"]) == ["other.example", HOST]
    assert {s.status for s in certs.statuses([HOST, "other.example"]).values()} == {"issued"}
    store.close()


def test_a_name_locked_elsewhere_is_skipped_then_issued(tmp_path: Path) -> None:
    orders: list[str] = []
    store, certs, manager = _world(tmp_path, orders)
    other = Locks(FileLockBackend(tmp_path / "locks"))  # another process, ordering HOST
    with other.hold(certificate_lock(HOST)):
        assert manager().tick() == ["other.example"]
        assert orders == ["other.example"]
        assert certs.statuses([HOST])[HOST].status == "pending"
    assert manager().tick() == [HOST]
    assert orders == ["other.example", HOST]
    store.close()


def test_a_name_issued_meanwhile_is_not_ordered_again(tmp_path: Path) -> None:
    """The lock is free again once the other process is done: the name,
    seen as due before, is checked again under the lock."""
    orders: list[str] = []
    store, certs, manager = _world(tmp_path, orders)
    late = manager()
    assert HOST in certs.due()  # what `late` read before the other one issued
    assert HOST in manager().tick()
    assert late._issue_alone(HOST, None) is False
    assert orders.count(HOST) == 1
    store.close()
