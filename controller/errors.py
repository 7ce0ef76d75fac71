"""Errors a user can cause, each with the HTTP status it maps to.

They are raised anywhere below the edges and mapped once at each edge: a JSON
body and status in the API, a one-line message and exit code in the CLI, a
`remote:` line and rejection reason in git.
"""
from __future__ import annotations


class ShipwayError(Exception):
    """A failure with a message meant for the user."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict[str, object]:
        return {"error": self.message, "code": self.status}


class BadRequest(ShipwayError):
    status, code = 400, "bad_request"


class Unauthorized(ShipwayError):
    status, code = 401, "unauthorized"


class Forbidden(ShipwayError):
    status, code = 403, "forbidden"


class NotFound(ShipwayError):
    status, code = 404, "not_found"


class Conflict(ShipwayError):
    status, code = 409, "conflict"


class TooLarge(ShipwayError):
    status, code = 413, "too_large"


class TooManyRequests(ShipwayError):
    status, code = 429, "too_many_requests"


class Unavailable(ShipwayError):
    status, code = 503, "unavailable"


class DeployFailed(ShipwayError):
    """A release did not become healthy; the previous release keeps serving."""

    status, code = 422, "deploy_failed"

    def __init__(self, message: str, log_tail: list[str] | None = None) -> None:
        super().__init__(message)
        self.log_tail = list(log_tail or [])


class BuildFailed(ShipwayError):
    """A build failed; the push is rejected with `reason`."""

    status, code = 422, "build_failed"

    def __init__(self, message: str, reason: str = "build failed") -> None:
        super().__init__(message)
        self.reason = reason
