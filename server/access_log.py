"""The HTTP access log without secrets: Twisted's combined log format, with
the values of signing and credential query parameters (a slug URL's
`signature` and `expires`, a keys URL's `sig`, S3's `X-Amz-*`, any `token`)
replaced. A signed URL in a log is a download anyone who reads the log can
make; the request line is all that is changed."""
from __future__ import annotations

import re
from typing import Any

from twisted.web import http
from twisted.web.iweb import IAccessLogFormatter
from zope.interface import provider

# Query parameter names whose values are never logged (case-insensitive).
SECRET_PARAMS = re.compile(rb"^(signature|sig|expires|token|access_token|api_key|key|"
                           rb"password|x-amz-[a-z0-9-]+|awsaccesskeyid)$", re.I)
REDACTED = b"REDACTED"


def redact_uri(uri: bytes) -> bytes:
    """`uri` with the value of each secret query parameter replaced."""
    path, sep, query = uri.partition(b"?")
    if not sep:
        return uri
    fields = []
    for field in query.split(b"&"):
        name, eq, _value = field.partition(b"=")
        fields.append(name + b"=" + REDACTED if eq and SECRET_PARAMS.match(name) else field)
    return path + b"?" + b"&".join(fields)


class _Redacted:
    """The request as the stock formatter reads it, with the URI redacted."""

    def __init__(self, request: Any) -> None:
        self._request = request
        self.uri = redact_uri(request.uri or b"")

    def getHeader(self, name: bytes) -> bytes | None:  # noqa: N802 (Twisted's name)
        value = self._request.getHeader(name)
        return redact_uri(value) if value and name.lower() == b"referer" else value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


@provider(IAccessLogFormatter)
def redacted_log_formatter(timestamp: str, request: Any) -> str:
    """Twisted's combined log line for `request`, secrets removed from the
    request line and the referrer (it may be a signed URL too)."""
    return http.combinedLogFormatter(timestamp, _Redacted(request))
