"""The builder's own errors (the controller and the pipeline map them)."""
from __future__ import annotations

from core.errors import OperationFailed


class BuildFailed(OperationFailed):
    """A build failed; the push is rejected with `reason`."""

    def __init__(self, message: str, reason: str = "build failed") -> None:
        super().__init__(message)
        self.reason = reason
