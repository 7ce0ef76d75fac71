"""The errors the controller and the parts above it raise and catch, under
the names they have always used: the kinds live in core/errors.py (no HTTP
status anywhere below the edges), BuildFailed in builder/errors.py and
DeployFailed in runner/errors.py. The API maps them once, in
controller/http_errors.py.
"""
from __future__ import annotations

from builder.errors import BuildFailed
from core.errors import (BadRequest, Conflict, Forbidden, NotFound, OperationFailed,
                         TooLarge, TooManyRequests, Unauthorized, Unavailable, UserError)
from runner.errors import DeployFailed

ShipwayError = UserError  # the name the edges have always caught

__all__ = ["BadRequest", "BuildFailed", "Conflict", "DeployFailed", "Forbidden", "NotFound",
           "OperationFailed", "ShipwayError", "TooLarge", "TooManyRequests", "Unauthorized",
           "Unavailable", "UserError"]
