"""Request bodies over the limit are never kept: the request stops storing
them (declared or chunked), so a huge body cannot fill memory or disk before
a handler refuses it with 413."""
from __future__ import annotations

from typing import Any

from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource

from core.settings import Limits
from server.web import body_limit, make_site

LIMITS = Limits(request_body_bytes=1000, repo_bytes=5000)


class Recorder(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[bool, int]] = []

    def render(self, request: Any) -> bytes:
        request.content.seek(0, 2)
        self.seen.append((request.body_too_large, request.content.tell()))
        return b"ok"


def send(raw: bytes) -> tuple[Recorder, bytes]:
    recorder = Recorder()
    protocol = make_site(recorder, LIMITS).buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    for i in range(0, len(raw), 4096):  # as a network would deliver it
        protocol.dataReceived(raw[i:i + 4096])
    return recorder, transport.value()


def chunked(total: int, size: int = 500) -> bytes:
    body = b""
    for _ in range(total // size):
        body += b"%x\r\n" % size + b"x" * size + b"\r\n"
    return body + b"0\r\n\r\n"


def test_limits_by_path() -> None:
    assert body_limit(b"/api/apps", LIMITS) == 1000
    assert body_limit(b"/app.git/git-receive-pack", LIMITS) == 6000
    assert body_limit(b"/slugs/x?sig=.git/", LIMITS) == 1000


def test_declared_length_over_the_limit_is_not_kept() -> None:
    recorder, _ = send(b"POST /api/apps HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n\r\n"
                       + b"x" * 3000)
    assert recorder.seen == [(True, 0)]


def test_chunked_body_stops_being_kept_at_the_limit() -> None:
    recorder, _ = send(b"POST /api/apps HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       + chunked(20_000))
    assert recorder.seen == [(True, 0)]


def test_bodies_within_the_limit_are_kept_whole() -> None:
    recorder, answer = send(b"POST /api/apps HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                            b"\r\n\r\n" + chunked(1000))
    assert recorder.seen == [(False, 1000)]
    assert answer.startswith(b"HTTP/1.1 200")
    # git pushes get the repository limit, not the API's
    recorder, _ = send(b"POST /app.git/git-receive-pack HTTP/1.1\r\nHost: x\r\n"
                       b"Content-Length: 5500\r\n\r\n" + b"x" * 5500)
    assert recorder.seen == [(False, 5500)]
    recorder, _ = send(b"POST /app.git/git-receive-pack HTTP/1.1\r\nHost: x\r\n"
                       b"Content-Length: 6001\r\n\r\n" + b"x" * 6001)
    assert recorder.seen == [(True, 0)]
