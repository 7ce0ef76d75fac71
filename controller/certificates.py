"""Certificates for every routed hostname, from ACME, kept in the database.

Several Shipway processes share one database, so the chain and key of each
hostname are stored there, encrypted with the keyring the config vars use
(AAD `certificate:<hostname>`), with the status users see in `domains
--json` (pending, issued, failed), `not_after` and the last error. The
manager's `tick()` issues what is pending, retries what failed (backoff:
acme_retry_seconds doubling per failure, at most a day) and renews at
acme_renew_fraction (2/3) of a certificate's lifetime; each issued
certificate is loaded into the router without a reload. A failed issuance
leaves plain HTTP alone; a renewal that fails keeps the old certificate.
certs:auto:refresh (bounded per name) and waking the manager for it are
controller/certificates_refresh.py's.
"""
from __future__ import annotations

import datetime as dt
import threading
from typing import Any, Callable, Iterable, Protocol

import attrs
import sqlalchemy as sa
from twisted.logger import Logger

from controller.certificates_refresh import Waker, register
from controller.crypto import Keyring
from core.locks import Busy, Locks
from controller.db import Database, UTCDateTime, metadata, now
from router.acme import ACMEClient, IssueError, Issued, new_account_key_pem

log = Logger(namespace="shipway.certificates")

MAX_BACKOFF = dt.timedelta(days=1)

certificates = sa.Table(
    "certificates", metadata,
    sa.Column("hostname", sa.String(253), primary_key=True),
    sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id", ondelete="CASCADE"),
              nullable=True, index=True),  # NULL: the platform's own --public-host
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("fullchain_ct", sa.Text, nullable=True),
    sa.Column("key_ct", sa.Text, nullable=True),
    sa.Column("not_before", UTCDateTime, nullable=True),
    sa.Column("not_after", UTCDateTime, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime, nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

acme_accounts = sa.Table(
    "acme_accounts", metadata,
    sa.Column("directory", sa.String(500), primary_key=True),
    sa.Column("key_ct", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)


@attrs.frozen
class CertificateStatus:
    hostname: str
    status: str  # pending, issued, failed
    not_after: dt.datetime | None
    error: str | None

    def json(self) -> dict[str, Any]:
        return {"status": self.status, "error": self.error,
                "not_after": self.not_after.isoformat() if self.not_after else None}


class CertificateTarget(Protocol):
    """The router's TLS side (router.haproxy_tls.TLSManager)."""

    def install(self, hostname: str, pem: str) -> None: ...

    def remove(self, hostname: str) -> None: ...

    def add_challenge(self, token: str, key_authorization: str) -> None: ...

    def remove_challenge(self, token: str) -> None: ...


def _aad(hostname: str) -> str:
    return f"certificate:{hostname}"


class CertificateStore:
    """The certificates table: wanted names, results, what is due."""

    def __init__(self, db: Database, keyring: Keyring, renew_fraction: float = 2 / 3,
                 retry_seconds: int = 60) -> None:
        self.db, self.keyring = db, keyring
        self.renew_fraction, self.retry_seconds = renew_fraction, retry_seconds

    def want(self, app_id: int, hostnames: Iterable[str]) -> list[str]:
        """Make the app's certificate names exactly `hostnames` (new ones
        pending); returns the names forgotten (the router stops serving them)."""
        names = set(hostnames)
        with self.db.write() as conn:
            rows = conn.execute(sa.select(certificates.c.hostname, certificates.c.app_id)
                                .where(certificates.c.hostname.in_(names)
                                       | (certificates.c.app_id == app_id))).all()
            have = {r.hostname: r.app_id for r in rows}
            gone = [h for h, a in have.items() if a == app_id and h not in names]
            moved = [h for h, a in have.items() if a != app_id and h in names]
            if gone or moved:  # a name that moved to another app gets a fresh certificate
                conn.execute(certificates.delete().where(certificates.c.hostname.in_(gone + moved)))
            for host in sorted(names - (set(have) - set(moved))):
                conn.execute(certificates.insert().values(
                    hostname=host, app_id=app_id, status="pending", failures=0,
                    updated_at=now()))
        return gone + moved

    def reconcile(self, wanted: dict[str, int | None]) -> list[str]:
        """Make the table hold exactly the names in `wanted` (hostname -> app
        id), in one transaction: new names pending, names gone (or moved to
        another app) deleted. Returns the names deleted."""
        with self.db.write() as conn:
            have = {r.hostname: r.app_id for r in conn.execute(
                sa.select(certificates.c.hostname, certificates.c.app_id)).all()}
            gone = [h for h, a in have.items() if h not in wanted or wanted[h] != a]
            for i in range(0, len(gone), 500):
                conn.execute(certificates.delete().where(
                    certificates.c.hostname.in_(gone[i:i + 500])))
            new = [{"hostname": h, "app_id": a, "status": "pending", "failures": 0,
                    "updated_at": now()}
                   for h, a in wanted.items() if h not in have or have[h] != a]
            if new:
                conn.execute(certificates.insert(), new)
        return gone

    def forget(self, hostname: str) -> None:
        with self.db.write() as conn:
            conn.execute(certificates.delete().where(certificates.c.hostname == hostname))

    def statuses(self, hostnames: Iterable[str]) -> dict[str, CertificateStatus]:
        with self.db.read() as conn:
            rows = conn.execute(sa.select(certificates).where(
                certificates.c.hostname.in_(list(hostnames)))).all()
        return {r.hostname: CertificateStatus(r.hostname, r.status, r.not_after, r.error)
                for r in rows}

    def due(self, at: dt.datetime | None = None) -> list[str]:
        """Names to issue now: pending or failed past their retry time, and
        issued ones past the renewal point of their lifetime."""
        at = at or now()
        out = []
        with self.db.read() as conn:
            for r in conn.execute(sa.select(certificates)).all():
                if r.next_attempt_at is not None and r.next_attempt_at > at:
                    continue
                if r.status in ("pending", "failed"):
                    out.append(r.hostname)
                elif r.next_attempt_at is not None:  # a refresh, or a renewal that failed
                    out.append(r.hostname)
                elif r.not_before and r.not_after and at >= self.renew_at(r.not_before, r.not_after):
                    out.append(r.hostname)
        return out

    def renew_at(self, not_before: dt.datetime, not_after: dt.datetime) -> dt.datetime:
        return not_before + (not_after - not_before) * self.renew_fraction

    def issued(self) -> dict[str, str]:
        """hostname -> PEM (chain + key) of every issued certificate."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(certificates).where(
                certificates.c.fullchain_ct.is_not(None))).all()
        return {r.hostname: (self.keyring.decrypt(r.fullchain_ct, _aad(r.hostname)).rstrip("\n")
                             + "\n" + self.keyring.decrypt(r.key_ct, _aad(r.hostname)))
                for r in rows}

    def record_issued(self, cert: Issued) -> bool:
        """Store a new certificate; False if the name was forgotten meanwhile."""
        with self.db.write() as conn:
            return bool(conn.execute(certificates.update().where(
                certificates.c.hostname == cert.hostname).values(
                status="issued", error=None, failures=0, next_attempt_at=None,
                fullchain_ct=self.keyring.encrypt(cert.fullchain_pem, _aad(cert.hostname)),
                key_ct=self.keyring.encrypt(cert.key_pem, _aad(cert.hostname)),
                not_before=cert.not_before, not_after=cert.not_after,
                updated_at=now())).rowcount)

    def record_failure(self, hostname: str, error: str) -> None:
        """Failed (or, with a certificate still valid, issued with the error),
        retried after a doubling delay."""
        with self.db.write() as conn:
            row = conn.execute(sa.select(certificates).where(
                certificates.c.hostname == hostname)).first()
            if row is None:
                return
            delay = min(MAX_BACKOFF, dt.timedelta(seconds=self.retry_seconds * 2 ** min(row.failures, 20)))
            keeps = row.not_after is not None and row.not_after > now()
            conn.execute(certificates.update().where(certificates.c.hostname == hostname).values(
                status="issued" if keeps else "failed", error=error[:500],
                failures=row.failures + 1, next_attempt_at=now() + delay, updated_at=now()))

    def account_key(self, directory: str) -> str:
        """The ACME account key for `directory`, made once and shared."""
        with self.db.write() as conn:
            row = conn.execute(sa.select(acme_accounts).where(
                acme_accounts.c.directory == directory)).first()
            if row is not None:
                return self.keyring.decrypt(row.key_ct, f"acme-account:{directory}")
            key = new_account_key_pem()
            conn.execute(acme_accounts.insert().values(
                directory=directory, created_at=now(),
                key_ct=self.keyring.encrypt(key, f"acme-account:{directory}")))
            return key


class CertificateManager:
    """Issues, renews and loads certificates (run `tick` in a thread)."""

    def __init__(self, store: CertificateStore, target: CertificateTarget,
                 acme_factory: Callable[[], ACMEClient], locks: Locks | None = None) -> None:
        self.store, self.target, self._acme_factory = store, target, acme_factory
        # Several `shipway server`s share the database: a per-name try-lock
        # held across processes (core/locks.py) so two never order the same
        # certificate at once (two orders, two rate-limit hits, and the
        # loser's certificate thrown away).
        self.locks = locks
        self._acme: ACMEClient | None = None
        self._lock = threading.Lock()
        self._waker = Waker(self.tick, self._lock)

    def wake(self) -> bool:
        """Tick now in a thread (certs:auto:refresh); False if one is queued."""
        return self._waker.wake()

    def load(self) -> None:
        """Put every stored certificate into the router (start, proxy restart)."""
        for host, pem in self.store.issued().items():
            try:
                self.target.install(host, pem)
            except Exception as e:  # one bad row never blocks the others
                log.warn("certificates: could not load {host}: {e}", host=host, e=e)

    def sync(self, app_id: int, hostnames: Iterable[str]) -> None:
        """The app's routed names changed: forget the certificates of names gone."""
        for host in self.store.want(app_id, hostnames):
            self.target.remove(host)

    def reconcile(self, wanted: dict[str, int | None]) -> None:
        """Every routed name (hostname -> app id): forget the others."""
        for host in self.store.reconcile(wanted):
            try:
                self.target.remove(host)
            except Exception as e:
                log.warn("certificates: could not unload {host}: {e}", host=host, e=e)

    def forget(self, hostname: str) -> None:
        self.store.forget(hostname)
        self.target.remove(hostname)

    def tick(self, at: dt.datetime | None = None) -> list[str]:
        """Issue every due name; returns the names issued."""
        with self._lock:
            return [h for h in self.store.due(at) if self._issue_alone(h, at)]

    def _issue_alone(self, hostname: str, at: dt.datetime | None) -> bool:
        """Issue `hostname` unless another process holds its lock (it is
        ordering it: skip, the next tick sees its result); once held, check
        again that it is due (the other process may have just issued it)."""
        if self.locks is None:
            return self.issue(hostname)
        try:
            with self.locks.hold(certificate_lock(hostname)):
                if hostname not in self.store.due(at):
                    return False
                return self.issue(hostname)
        except Busy:
            log.info("certificates: {host} is being issued by another process", host=hostname)
            return False

    def issue(self, hostname: str) -> bool:
        """Issue (or renew) one name now and load it; False on failure."""
        try:
            if self._acme is None:
                self._acme = self._acme_factory()
            cert = self._acme.issue(hostname, self.target)
        except IssueError as e:
            log.warn("certificates: {host}: {e}", host=hostname, e=str(e))
            self.store.record_failure(hostname, str(e))
            return False
        if self.store.record_issued(cert):
            self.target.install(hostname, cert.pem)
            log.info("certificates: {host} issued until {t}", host=hostname, t=cert.not_after)
            return True
        return False


def routed_names(db: Database, app_hostname: Callable[[str], str]) -> dict[str, int]:
    """hostname -> app id for every name the router serves: APP.<base
    domain> and each verified custom domain."""
    from controller.db import apps, domains

    with db.read() as conn:
        out = {app_hostname(r.name): r.id for r in conn.execute(sa.select(apps.c.id, apps.c.name))}
        out.update((r.hostname, r.app_id) for r in conn.execute(
            sa.select(domains.c.hostname, domains.c.app_id).where(domains.c.verified_at.is_not(None))))
    return out


HTTPS_ONLY_VAR = "HTTPS_ONLY"  # SHIPWAY_* names are reserved to the platform


def https_only_names(db: Database, keyring: Keyring, routed: dict[str, int]) -> set[str]:
    """Names to redirect from plain HTTP to HTTPS: those of apps whose config
    var HTTPS_ONLY is true, once their certificate is issued (a
    redirect to a name without one would only trade a page for an error)."""
    from controller.config import config_aad
    from controller.db import config_vars

    with db.read() as conn:
        rows = conn.execute(sa.select(config_vars.c.app_id, config_vars.c.value_ct)
                            .where(config_vars.c.name == HTTPS_ONLY_VAR)).all()
        issued = {r.hostname for r in conn.execute(
            sa.select(certificates.c.hostname).where(certificates.c.fullchain_ct.is_not(None)))}
    on = {r.app_id for r in rows
          if keyring.decrypt(r.value_ct, config_aad(r.app_id, HTTPS_ONLY_VAR)).strip().lower()
          in ("1", "true", "yes", "on")}
    return {h for h, a in routed.items() if a in on and h in issued}


def acme_enabled(directory: str | None, base_domain: str) -> bool:
    """ACME runs when a directory is set (base domain localhost: only then)."""
    return bool(directory)


def certificate_lock(hostname: str) -> str:
    """The cross-process lock name of one hostname's issuance."""
    return f"certificate:{hostname}"


def make_manager(db: Database, keyring: Keyring, settings: Any,
                 target: CertificateTarget, locks: Locks | None = None) -> CertificateManager | None:
    """The manager for these settings, or None when ACME is off."""
    if not acme_enabled(settings.acme_directory, settings.base_domain):
        return None
    store = CertificateStore(db, keyring, settings.acme_renew_fraction, settings.acme_retry_seconds)

    def factory() -> ACMEClient:
        return ACMEClient(settings.acme_directory, store.account_key(settings.acme_directory),
                          email=settings.acme_email, ca_bundle=settings.acme_ca_bundle)

    manager = CertificateManager(store, target, factory, locks)
    register(manager)
    return manager
