"""The one output type: where a long operation writes its progress lines
(a pusher's `remote:` lines, the CLI's progress, a build log)."""
from __future__ import annotations

from typing import Callable

Output = Callable[[str], None]


def quiet(_line: str) -> None:
    """An output that drops every line."""
