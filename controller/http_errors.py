"""The one mapping from a user-facing error to an HTTP status and JSON body
(the API's edge; gitd's smart-HTTP edge answers git in its own words)."""
from __future__ import annotations

from typing import Any

from core.errors import (BadRequest, Conflict, Forbidden, NotFound, OperationFailed,
                         TooLarge, TooManyRequests, Unauthorized, Unavailable, UserError)
from runner.errors import DeployFailed

# Most specific first is not needed: each error has one kind, found by isinstance.
STATUSES: tuple[tuple[type[UserError], int], ...] = (
    (BadRequest, 400), (Unauthorized, 401), (Forbidden, 403), (NotFound, 404),
    (Conflict, 409), (TooLarge, 413), (OperationFailed, 422), (TooManyRequests, 429),
    (Unavailable, 503),
)


def http_status(exc: UserError) -> int:
    """The HTTP status of a user-facing error (400 for one of no known kind)."""
    for kind, status in STATUSES:
        if isinstance(exc, kind):
            return status
    return 400


def error_json(exc: UserError) -> dict[str, Any]:
    """The JSON body of a user-facing error: its message and status, and the
    log tail of a deploy that failed."""
    payload: dict[str, Any] = {"error": exc.message, "code": http_status(exc)}
    if isinstance(exc, DeployFailed) and exc.log_tail:
        payload["log_tail"] = exc.log_tail
    return payload
