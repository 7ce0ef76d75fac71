"""The access log keeps paths and harmless parameters, never a signature,
an expiry or a token."""
from __future__ import annotations

from server.access_log import redact_uri, redacted_log_formatter


class FakeRequest:
    """Only what the stock formatter reads."""

    method, clientproto, code, sentLength = b"GET", b"HTTP/1.1", 200, 10

    def __init__(self, uri: bytes, referer: bytes | None = None) -> None:
        self.uri, self.referer = uri, referer

    def getClientAddress(self):  # noqa: N802
        return None

    def getHeader(self, name: bytes):  # noqa: N802
        return self.referer if name == b"referer" else None


def test_secret_parameters_are_redacted() -> None:
    uri = b"/slugs/app/v1.tgz?expires=1790000000&signature=abc123&x=1"
    assert redact_uri(uri) == b"/slugs/app/v1.tgz?expires=REDACTED&signature=REDACTED&x=1"
    assert redact_uri(b"/keys/app?sig=ff&X-Amz-Signature=1") == \
        b"/keys/app?sig=REDACTED&X-Amz-Signature=REDACTED"
    assert redact_uri(b"/api/apps/x/logs?lines=5") == b"/api/apps/x/logs?lines=5"
    assert redact_uri(b"/a.git/info/refs?service=git-upload-pack") == \
        b"/a.git/info/refs?service=git-upload-pack"


def test_the_log_line_has_no_secret() -> None:
    line = redacted_log_formatter("[ts]", FakeRequest(b"/slugs/k?expires=177&signature=deadbeef",
                                                     referer=b"http://h/k?token=s3cr3t"))
    assert "deadbeef" not in line and "177" not in line and "s3cr3t" not in line
    assert '"GET /slugs/k?expires=REDACTED&signature=REDACTED HTTP/1.1" 200' in line
