"""The runner's own errors (the controller and the API map them)."""
from __future__ import annotations

from core.errors import OperationFailed


class DeployFailed(OperationFailed):
    """A release did not become healthy; the previous release keeps serving."""

    def __init__(self, message: str, log_tail: list[str] | None = None) -> None:
        super().__init__(message)
        self.log_tail = list(log_tail or [])
