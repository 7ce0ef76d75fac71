"""The `logs -f` followers' flushes of one fan-out batch reach the reactor
in one call (controller/api_follow.py `_Flushes`), and a follower whose
flush fails does not keep the others' lines back."""
from __future__ import annotations

from typing import Any, Callable

from controller.api_follow import _Flushes


def test_one_reactor_call_for_every_follower_of_a_batch() -> None:
    calls: list[Callable[[], None]] = []
    flushes = _Flushes(lambda fn, *args: calls.append(fn))
    done: list[int] = []

    def broken() -> None:
        raise RuntimeError("a follower's request is gone")

    for flush in (lambda: done.append(1), broken, lambda: done.append(3)):
        flushes.call(flush)
    assert len(calls) == 1  # one wake-up of the reactor for the three
    calls[0]()
    assert done == [1, 3]
    flushes.call(lambda: done.append(4))  # the next batch: a new call
    assert len(calls) == 2
    calls[1]()
    assert done == [1, 3, 4]


def test_a_flush_scheduled_while_the_reactor_runs_the_batch_is_not_lost() -> None:
    calls: list[Any] = []
    flushes = _Flushes(lambda fn, *args: calls.append(fn))
    done: list[str] = []

    def first() -> None:
        done.append("first")
        flushes.call(lambda: done.append("late"))  # the fan-out thread, meanwhile

    flushes.call(first)
    calls.pop(0)()
    assert done == ["first"] and len(calls) == 1
    calls.pop(0)()
    assert done == ["first", "late"]
