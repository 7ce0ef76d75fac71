"""The `ps:ssh` target names the gateway accepts: [REPLICA.]APP only."""
from __future__ import annotations

import pytest

from gitd.tunnel import parse_target


@pytest.mark.parametrize("host, want", [
    ("myapp", ("myapp", None)),
    ("3f2a1c9d0b7e.myapp", ("myapp", "3f2a1c9d0b7e")),
    ("3F2A.My-App", ("my-app", "3f2a")),
])
def test_targets(host: str, want: tuple[str, str | None]) -> None:
    assert parse_target(host) == want


@pytest.mark.parametrize("host", ["", "127.0.0.1", "x.y.myapp", "zzzz.myapp", "abc.myapp",
                                  "myapp.example.com", "-app", "a" * 64, "localhost:22"])
def test_other_hosts_are_refused(host: str) -> None:
    with pytest.raises(ValueError):
        parse_target(host)
