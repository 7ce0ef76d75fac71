"""The parts of one Shipway process, built once and passed down explicitly."""
from __future__ import annotations

from typing import Any

import attrs

from server.settings import Settings


@attrs.define
class Services:
    settings: Settings
    controller: Any  # controller.service.Controller
    slugs: Any  # storage.interface.ISlugStore
    builder: Any  # builder.interface.IBuilder
    router: Any  # router.interface.IRouter
    runner: Any  # runner.interface.IRunner
    pipeline: Any  # hooks.pipeline.Pipeline
    logs: Any = None  # logger.store.LogStore (None: no log history)
