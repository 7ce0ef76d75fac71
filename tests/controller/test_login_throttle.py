"""The login throttle on its own clock: exponential backoff after N
failures in a window, per account and per address, bounded memory."""
from __future__ import annotations

import pytest

from controller.http_errors import http_status
from controller.login_throttle import LoginThrottle, LoginThrottled, Policy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, max_entries: int = 100_000) -> LoginThrottle:
    return LoginThrottle(Policy(3, 600, 2, 60), Policy(10, 600, 2, 60),
                         max_entries=max_entries, clock=clock)


def test_backoff_doubles_and_is_capped() -> None:
    clock = Clock()
    t = make(clock)
    for _ in range(2):
        t.check("a@x.test", "1.2.3.4")
        t.failed("a@x.test", "1.2.3.4")
    t.check("a@x.test", "1.2.3.4")  # 2 failures: not yet locked
    t.failed("a@x.test", "1.2.3.4")
    with pytest.raises(LoginThrottled) as locked:
        t.check("a@x.test", "9.9.9.9")  # the account is locked, from any address
    assert locked.value.retry_after == 2 and http_status(locked.value) == 429
    waits = []
    for _ in range(6):
        clock.now += 61
        t.failed("a@x.test", None)
        with pytest.raises(LoginThrottled) as e:
            t.check("A@X.test ", None)
        waits.append(e.value.retry_after)
    assert waits == [4, 8, 16, 32, 60, 60]


def test_success_clears_the_account_not_the_address() -> None:
    clock = Clock()
    t = make(clock)
    for i in range(9):
        t.failed(f"u{i}@x.test", "1.2.3.4")
    t.succeeded("u0@x.test")
    t.failed("other@x.test", "1.2.3.4")  # the 10th failure of the address
    with pytest.raises(LoginThrottled):
        t.check("fresh@x.test", "1.2.3.4")
    t.check("fresh@x.test", "5.6.7.8")
    clock.now += 601  # the window has passed and the lock ended
    t.check("fresh@x.test", "1.2.3.4")


def test_entries_are_bounded() -> None:
    clock = Clock()
    t = make(clock, max_entries=50)
    for i in range(1000):
        t.failed(f"u{i}@x.test", None)
    assert len(t._entries) == 50
