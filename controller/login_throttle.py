"""Throttling of failed logins: per account and per client address.

Every place a password or an API key is checked (API login, Basic and
Bearer auth on the API, Basic auth of git over HTTP) asks the one throttle
of its controller before checking, and tells it the outcome after. Password
logins count per account and per address; API-key checks per address only
(a key is a long random secret: an account lock on its failures would only
let anyone who knows an email stop that user's pushes). After
`failures` failed attempts within `window` seconds, a key (the account, or
the client's address) is locked for `base_delay` seconds, doubling with each
further failure up to `max_delay`: the usual exponential backoff. While
locked, every attempt is refused with 429 and `Retry-After` *before* the
credential is checked, so the right password is refused too and a guesser
learns nothing. A success clears the account's failures, never the
address's (else a guesser would clear it by logging into an own account).

The state is in memory, shared by every path of one process; a server split
into several processes throttles in each. It is bounded: entries whose
window has passed are dropped, and past `max_entries` the oldest go first.

Trade-off: anyone who knows an email can keep that account's password
login locked by failing on purpose (its API key, the CLI's and git's
credential, keeps working); the lock is short at first and the address lock
stops one client doing it to many accounts.
"""
from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from typing import Callable

import attrs

from controller.errors import TooManyRequests


class LoginThrottled(TooManyRequests):
    """429: too many failed logins; `retry_after` whole seconds to wait."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "retry_after": self.retry_after}


@attrs.frozen
class Policy:
    failures: int  # failures allowed in the window before the first lock
    window: float  # seconds a failure is remembered
    base_delay: float  # the first lock; doubled by each further failure
    max_delay: float

    def delay(self, count: int) -> float:
        """The lock after the `count`-th failure in the window (0: none)."""
        if count < self.failures:
            return 0.0
        return min(self.max_delay, self.base_delay * 2.0 ** min(count - self.failures, 40))


@attrs.define
class _Entry:
    count: int = 0
    first: float = 0.0
    locked_until: float = 0.0


class LoginThrottle:
    """Thread-safe; one per controller (see `UsersMixin.throttle`)."""

    def __init__(self, account: Policy, address: Policy, max_entries: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policies = {"account": account, "address": address}
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: object) -> "LoginThrottle":
        def get(name: str, default: float) -> float:
            return float(getattr(settings, name, default))

        window, base, top = (get("login_throttle_window", 900), get("login_throttle_delay", 2),
                             get("login_throttle_max_delay", 900))
        return cls(Policy(int(get("login_throttle_account_failures", 5)), window, base, top),
                   Policy(int(get("login_throttle_address_failures", 50)), window, base, top))

    def _keys(self, account: str | None, address: str | None) -> list[tuple[str, str]]:
        keys = []
        if account:
            keys.append(("account", account.strip().lower()[:320]))
        if address:
            keys.append(("address", address[:64]))
        return keys

    def _live(self, key: tuple[str, str], now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and now - entry.first > self.policies[key[0]].window \
                and now >= entry.locked_until:
            del self._entries[key]
            return None
        return entry

    def check(self, account: str | None, address: str | None) -> None:
        """Raise LoginThrottled while the account or the address is locked."""
        now = self.clock()
        wait = 0.0
        with self._lock:
            for key in self._keys(account, address):
                entry = self._live(key, now)
                if entry is not None and entry.locked_until > now:
                    wait = max(wait, entry.locked_until - now)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise LoginThrottled(f"too many failed logins; try again in {seconds} s", seconds)

    def failed(self, account: str | None, address: str | None) -> None:
        now = self.clock()
        with self._lock:
            for key in self._keys(account, address):
                entry = self._live(key, now)
                if entry is None:
                    entry = self._entries[key] = _Entry(first=now)
                self._entries.move_to_end(key)
                entry.count += 1
                delay = self.policies[key[0]].delay(entry.count)
                if delay:
                    entry.locked_until = max(entry.locked_until, now + delay)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def succeeded(self, account: str | None) -> None:
        if account:
            with self._lock:
                self._entries.pop(("account", account.strip().lower()[:320]), None)
