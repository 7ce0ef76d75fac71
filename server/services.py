"""The parts of one Shipway process, built once and passed down explicitly,
each typed by its interface where the parts meet."""
from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from core.settings import Settings

if TYPE_CHECKING:  # the composition root names every part; none is imported to run
    from builder.interface import IBuilder
    from controller.service import Controller
    from hooks.pipeline import Pipeline
    from logger.store import LogStore
    from router.interface import IRouter
    from runner.interface import IRunner
    from storage.interface import ISlugStore


@attrs.define
class Services:
    settings: Settings
    controller: Controller
    slugs: ISlugStore
    builder: IBuilder
    router: IRouter
    runner: IRunner
    pipeline: Pipeline
    logs: LogStore | None = None  # None: no log history
