"""API bodies: nesting beyond the limit is a 400 with a clear message, never
a RecursionError (a 500)."""
from __future__ import annotations

import pytest

from controller.api import json_depth, parse_body
from controller.errors import BadRequest


def test_depth_is_counted_without_recursion() -> None:
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert json_depth({"a": deep}, 40) == 41
    assert json_depth({"a": [1, {"b": 2}]}, 40) == 3


@pytest.mark.parametrize("depth", [33, 900, 200_000])
def test_too_deep_is_a_bad_request(depth: int) -> None:
    body = b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"
    with pytest.raises(BadRequest, match="nested too deeply"):
        parse_body(body, 32)


def test_within_the_limit_parses() -> None:
    body = b'{"a":' + b"[" * 31 + b"]" * 31 + b"}"
    assert parse_body(body, 32)["a"] is not None
