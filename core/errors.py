"""Errors a user can cause, by kind, with no transport in them.

Every part raises these (or its own subclasses: builder.errors.BuildFailed,
runner.errors.DeployFailed); each edge maps them once: an HTTP status and JSON
body in the API (controller/http_errors.py), a one-line message and exit code
in the CLI, a `remote:` line and rejection reason in git.
"""
from __future__ import annotations


class UserError(Exception):
    """A failure with a message meant for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(UserError):
    """The request itself is wrong (a bad name, value or shape)."""


class Unauthorized(UserError):
    """Who is asking is not known (no or wrong credentials)."""


class Forbidden(UserError):
    """Who is asking is known and may not do this."""


class NotFound(UserError):
    """The thing asked for does not exist (or is not the asker's to see)."""


class Conflict(UserError):
    """The request clashes with the current state (a name taken, work running)."""


class TooLarge(UserError):
    """The request carries more than the server accepts."""


class TooManyRequests(UserError):
    """The asker must wait before trying again."""


class Unavailable(UserError):
    """The server cannot do this now (a part is down or busy)."""


class OperationFailed(UserError):
    """A build or deploy ran and did not succeed; the old state stands."""
