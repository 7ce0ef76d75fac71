"""What gitd hands the pipeline, and what it gets back."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import attrs

from controller.models import App, User

ZERO_SHA = "0" * 40
Progress = Callable[[str], None]  # one line of output for the pusher


@attrs.frozen
class RefUpdate:
    ref: str  # "refs/heads/main"
    old: str  # 40-hex, ZERO_SHA when creating
    new: str  # 40-hex, ZERO_SHA when deleting


@attrs.frozen
class PushOptions:
    hot: bool = False
    clean: bool = False
    raw: tuple[str, ...] = ()


@attrs.frozen
class Push:
    app: App
    user: User
    repo_path: Path  # the bare repository; new objects are in it, refs not moved
    updates: tuple[RefUpdate, ...]
    options: PushOptions


# The pipeline answers, per ref, None to accept (gitd then moves the ref) or a
# short rejection reason shown as "! [remote rejected] ref (reason)".
PushOutcome = dict[str, "str | None"]
