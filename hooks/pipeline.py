"""PLACEHOLDER: replaced by the part owner; lets the server boot meanwhile."""
from __future__ import annotations

from typing import Any


class Pipeline:
    def __init__(self, settings: Any, **parts: Any) -> None:
        self.settings = settings

    def receive(self, push: Any, progress: Any) -> Any:
        raise NotImplementedError("pipeline not built yet")
