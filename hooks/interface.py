"""What gitd hands the pipeline, and what it gets back."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import attrs

from controller.models import App, User
from core.output import Output

ZERO_SHA = "0" * 40
Progress = Output  # one line of output for the pusher


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
    # Moves one accepted ref at once and returns None, or a reason if the ref
    # changed under the push. The pipeline calls it for a deploy while it still
    # holds the app's push lock, so two deploys cannot cross; gitd moves every
    # other accepted ref after `receive` returns. None: gitd moves them all.
    move_ref: "Callable[[RefUpdate], str | None] | None" = None


# The pipeline answers, per ref, None to accept (gitd then moves the ref) or a
# short rejection reason shown as "! [remote rejected] ref (reason)".
PushOutcome = dict[str, "str | None"]
