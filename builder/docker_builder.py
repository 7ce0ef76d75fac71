"""PLACEHOLDER: replaced by the part owner; lets the server boot meanwhile."""
from __future__ import annotations

from typing import Any


class DockerBuilder:
    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def build(self, request: Any, output: Any) -> Any:
        raise NotImplementedError("builder not built yet")

    def remove_cache(self, app: str) -> None:
        raise NotImplementedError("builder not built yet")

    def cleanup_leftovers(self) -> None:
        pass
