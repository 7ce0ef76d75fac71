"""certs:auto:refresh in the certificates store, and waking the manager.

A refresh makes an app's names due now instead of after their backoff. The
server orders every certificate on one shared ACME account (Let's Encrypt:
300 new orders per account per 3 hours, 5 failed validations per hostname
per hour) and its manager issues one name at a time, so a refresh is
bounded twice. Per hostname: a name tried, refreshed or issued less than
`cert_refresh_interval` seconds ago is refused (RefreshTooSoon, a 429 with
Retry-After), and a refresh keeps `failures` at 1 or more for a name that
already failed, so its backoff goes on growing after further failures. Per
account: at most `cert_refreshes_per_hour` names refreshed in any rolling
hour across every app (AccountLimitReached, a 429 with Retry-After), else
many names or many apps could still spend the account's limits; and of
those at most a third (`owner_share`) for the apps of any one owning user
(OwnerShareReached), else one user (signup is open) could take the whole
hour from every other tenant. Those are counted in the database
(certificate_refreshes), so every server process on it shares the count;
the manager's own issuances and renewals are neither counted nor limited
here.
"""
from __future__ import annotations

import datetime as dt
import math
import threading
import weakref
from typing import Any, Callable, Iterable, Protocol

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from twisted.logger import Logger

from controller.db import UTCDateTime, advisory_lock, metadata, now
from core.errors import Conflict, TooManyRequests

log = Logger(namespace="shipway.certificates")

HOUR = dt.timedelta(hours=1)

# One row per name a user refreshed (migration 0010). No foreign key to
# apps or users: deleting an app (or its owner) must not give its refreshes
# back to the account.
certificate_refreshes = sa.Table(
    "certificate_refreshes", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("directory", sa.String(500), nullable=False),  # the ACME account's
    sa.Column("owner_id", sa.Integer, nullable=False),  # the refreshed app's owner
    sa.Column("hostname", sa.String(253), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_certificate_refreshes_directory_at", "directory", "at"),
    sa.Index("ix_certificate_refreshes_owner_id_at", "owner_id", "at"),
)


class RefreshTooSoon(TooManyRequests):
    """429: a name was tried or refreshed too recently; `retry_after` whole
    seconds until every name asked for may be refreshed (the API's
    Retry-After header)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AccountLimitReached(RefreshTooSoon):
    """429: the ACME account's refreshes of the last hour are used up, for
    every app; `retry_after` until enough of them leave the hour."""


class OwnerShareReached(RefreshTooSoon):
    """429: the owning user's share of the account's hour is used up (other
    users may still refresh); `retry_after` until enough of theirs leave it."""


@attrs.frozen
class AccountLimit:
    """The bound on a refresh of an app of `owner_id`: `per_hour` names
    refreshed on the ACME account of `directory` in any rolling hour (0: no
    refreshes at all), of which `owner_share` for any one owner."""

    directory: str
    per_hour: int
    owner_id: int

    @property
    def owner_share(self) -> int:
        """A third of the hour, so no one user can lock the others out; at
        least 1, else a small limit would let nobody refresh."""
        return max(1, self.per_hour // 3)


def _span(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60} min" if seconds >= 60 and seconds % 60 == 0 else f"{seconds} s"


def _last_touched(row: Any) -> dt.datetime | None:
    """When the name was last tried, refreshed or issued (updated_at), or
    None for a name only added so far (it is due at once anyway)."""
    never = (row.status == "pending" and row.failures == 0 and row.next_attempt_at is None
             and row.fullchain_ct is None)
    return None if never else row.updated_at


def _check_interval(rows: Iterable[Any], interval: dt.timedelta, at: dt.datetime) -> None:
    """Refuse the whole refresh if any name was touched within `interval`."""
    waits = {}
    for row in rows:
        last = _last_touched(row)
        if last is not None and at < last + interval:
            waits[row.hostname] = last + interval
    if not waits:
        return
    until = max(waits.values())
    seconds = max(1, math.ceil((until - at).total_seconds()))
    hosts = sorted(waits)
    named = ", ".join(hosts[:3]) + (f" and {len(hosts) - 3} more" if len(hosts) > 3 else "")
    raise RefreshTooSoon(
        f"{named} {'was' if len(hosts) == 1 else 'were'} tried or refreshed less than "
        f"{_span(interval.total_seconds())} ago: try again after "
        f"{until:%Y-%m-%d %H:%M:%S} UTC (in {seconds} s)", seconds)


def _lock_account(conn: Connection, limit: AccountLimit) -> None:
    """Serialise refreshes on one account: two processes counting at once
    would both see room for the last one. Taken before any row lock, so two
    refreshes never wait on each other in opposite orders. SQLite's write
    transaction is exclusive already."""
    advisory_lock(conn, f"certificate-refresh:{limit.directory}")


def _wait(times: list[dt.datetime], count: int, limit: int) -> dt.datetime | None:
    """When `count` more fit under `limit` given the hour's `times` (oldest
    first), or None if they fit now."""
    over = len(times) + count - limit
    return None if over <= 0 else times[over - 1] + HOUR  # the oldest to leave first


def _check_account(conn: Connection, limit: AccountLimit, count: int, at: dt.datetime) -> None:
    """Refuse `count` more refreshed names if the account's last hour, or
    the owner's share of it, has no room for them; forget refreshes older
    than the hour, of any directory (a former one's would stay forever)."""
    t = certificate_refreshes
    conn.execute(t.delete().where(t.c.at <= at - HOUR))
    share = limit.owner_share
    if limit.per_hour <= 0:
        raise Conflict("certificate refreshes are off on this server "
                       "(its account-wide SHIPWAY_CERT_REFRESHES_PER_HOUR is 0)")
    if count > share:  # never fits: no Retry-After would help
        whose = ("this server's account-wide limit" if share == limit.per_hour else
                 f"the per-user share ({share}) of this server's account-wide limit")
        raise Conflict(
            f"refreshing {count} names at once is more than {whose} of {limit.per_hour} "
            "certificate refreshes per hour (every app shares one ACME account): refresh fewer "
            "at a time, with --domain")
    rows = conn.execute(sa.select(t.c.at, t.c.owner_id).where(t.c.directory == limit.directory)
                        .order_by(t.c.at)).all()
    times = [r.at for r in rows]
    mine = [r.at for r in rows if r.owner_id == limit.owner_id]
    account, owner = _wait(times, count, limit.per_hour), _wait(mine, count, share)
    if account is None and owner is None:
        return
    until = max(u for u in (account, owner) if u is not None)  # both must have room
    seconds = max(1, math.ceil((until - at).total_seconds()))
    when = f"try again after {until:%Y-%m-%d %H:%M:%S} UTC (in {seconds} s)"
    if owner is not None and (account is None or owner >= account):
        raise OwnerShareReached(
            f"the per-user share of {share} certificate refreshes per hour is reached for the "
            f"apps of this app's owner ({len(mine)} names refreshed in the last hour; the "
            f"server's one ACME account allows {limit.per_hour} for all users): {when}", seconds)
    raise AccountLimitReached(
        f"the account-wide limit of {limit.per_hour} certificate refreshes per hour is "
        f"reached ({len(times)} names refreshed in the last hour; every app shares one ACME "
        f"account): {when}", seconds)


def _count(conn: Connection, limit: AccountLimit, names: list[str], at: dt.datetime) -> None:
    conn.execute(certificate_refreshes.insert(), [
        {"directory": limit.directory, "owner_id": limit.owner_id, "hostname": host, "at": at}
        for host in names])


def refresh(conn: Connection, app_id: int, hostnames: Iterable[str],
            interval: dt.timedelta, at: dt.datetime | None = None,
            account: AccountLimit | None = None) -> dict[str, str]:
    """certs:auto:refresh, in the caller's transaction: each name due now.
    An issued certificate is renewed, and served until its successor is
    stored (a failed renewal keeps it). Raises RefreshTooSoon if a name was
    tried, refreshed or issued within `interval`, AccountLimitReached or
    OwnerShareReached if `account` (None: not bounded) has no room for these
    names this hour, for every owner or for `account.owner_id`, Conflict if
    the server changed the same rows meanwhile. hostname ->
    "renew", "retry" (pending, failed) or "issue" (not seen yet, or still
    another app's)."""
    from controller.certificates import certificates as t

    at = at or now()
    names = sorted(set(hostnames))
    if account is not None:
        _lock_account(conn, account)
    # FOR UPDATE (PostgreSQL): a concurrent refresh waits, then sees ours and
    # is refused; SQLite's write transaction is already exclusive.
    rows = {r.hostname: r for r in conn.execute(
        sa.select(t.c.hostname, t.c.app_id, t.c.status, t.c.failures, t.c.next_attempt_at,
                  t.c.fullchain_ct, t.c.updated_at)
        .where(t.c.hostname.in_(names)).with_for_update()).all()}
    _check_interval(rows.values(), interval, at)
    if account is not None:
        _check_account(conn, account, len(names), at)
        _count(conn, account, names, at)
    out: dict[str, str] = {}
    try:
        for host in names:
            row = rows.get(host)
            if row is not None and row.app_id != app_id:
                # Still the previous app's (the manager's reconcile has not
                # run yet): its certificate is not this app's to renew.
                conn.execute(t.delete().where(t.c.hostname == host, t.c.app_id == row.app_id))
                row = None
            changed = 0
            if row is not None:
                renew = row.status == "issued"
                changed = conn.execute(t.update().where(t.c.hostname == host, t.c.app_id == app_id)
                                       .values(next_attempt_at=at, failures=min(row.failures, 1),
                                               error=None, updated_at=at,
                                               status=row.status if renew else "pending")).rowcount
                out[host] = "renew" if renew else "retry"
            if not changed:  # new here (or deleted meanwhile): pending, due now
                conn.execute(t.insert().values(hostname=host, app_id=app_id, status="pending",
                                               failures=0, next_attempt_at=at, updated_at=at))
                out[host] = "issue"
    except sa.exc.IntegrityError:  # the manager's reconcile added the name meanwhile
        raise Conflict("the server is updating these certificates right now: "
                       "try again in a few seconds") from None
    return out


class Waker:
    """Runs `tick` now in its own thread (certs:auto:refresh), not at the
    server loop's next turn; a wake while one is queued adds nothing. The
    queued flag is tested and set under a lock, so two API threads waking
    at once start one thread."""

    def __init__(self, tick: Callable[[], Any], busy: threading.Lock) -> None:
        self._tick, self._busy = tick, busy  # busy: the manager's tick lock
        self._guard = threading.Lock()
        self._queued = False

    def wake(self) -> bool:
        """Queue a tick; False if one was queued already."""
        with self._guard:
            if self._queued:
                return False
            self._queued = True
        try:
            threading.Thread(target=self._run, name="certificates-wake", daemon=True).start()
        except BaseException:
            with self._guard:
                self._queued = False
            raise
        return True

    def _run(self) -> None:
        with self._busy:  # after a tick under way, whose due() was read before the wake
            with self._guard:
                self._queued = False
        try:
            self._tick()
        except Exception as e:  # the server's loop tries again; this is only sooner
            log.warn("certificates: woken tick failed: {e}", e=e)


class _Wakeable(Protocol):
    def wake(self) -> bool: ...


# This process's managers (certificates.make_manager), woken by an API call
# here; other processes' see a refresh at their loop's next turn (server/tls.py).
_running: "weakref.WeakSet[Any]" = weakref.WeakSet()


def register(manager: _Wakeable) -> None:
    _running.add(manager)


def wake_managers() -> int:
    """Wake this process's certificate managers; returns how many."""
    managers = list(_running)
    for manager in managers:
        manager.wake()
    return len(managers)
