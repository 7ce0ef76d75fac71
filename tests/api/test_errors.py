"""The error edge of the API resource, with injected faults: an unexpected
exception is a generic 500 (the traceback goes to the log, not the client),
NotImplementedError is 501, and a disconnected client is not written to.

These drive `ApiResource` directly with Twisted's DummyRequest and a
synchronous thread runner; the controller is a fault injector, not a fake
of the code under test."""
from __future__ import annotations

import io
import json
from types import SimpleNamespace
from typing import Any

from twisted.internet import defer
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from controller.api import ApiResource
from controller.errors import Conflict, DeployFailed
from controller.models import User
from server.settings import Settings

ME = User(id=1, email="me@example.com", created_at=None)  # type: ignore[arg-type]


class Faulty:
    """Authenticates anyone; `list_apps` raises the injected exception."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def user_for_api_key(self, key: str) -> User:
        return ME

    def list_apps(self, user: User) -> Any:
        raise self.exc

    def set_config(self, *a: Any) -> Any:
        raise self.exc


def run(exc: BaseException, method: bytes = b"GET", path: bytes = b"/api/apps",
        body: bytes = b"") -> tuple[int, dict, DummyRequest]:
    services = SimpleNamespace(settings=Settings(), controller=Faulty(exc))
    resource = ApiResource(services, run_in_thread=lambda f, *a: defer.maybeDeferred(f, *a))
    request = DummyRequest(path.split(b"/")[1:])
    request.method, request.path = method, path
    request.content = io.BytesIO(body)
    request.requestHeaders.addRawHeader(b"authorization", b"Bearer k")
    assert resource.render(request) == NOT_DONE_YET
    assert request.finished
    return request.responseCode, json.loads(b"".join(request.written)), request


def test_unexpected_exception_is_a_generic_500() -> None:
    status, body, _ = run(RuntimeError("secret detail /etc/passwd"))
    assert status == 500
    assert body == {"error": "internal server error (see the server log)", "code": 500}


def test_not_implemented_is_501() -> None:
    status, body, _ = run(NotImplementedError("runner not built yet"))
    assert status == 501 and body["code"] == 501 and "runner not built yet" in body["error"]


def test_shipway_error_maps_to_its_status() -> None:
    status, body, _ = run(Conflict("taken"))
    assert (status, body) == (409, {"error": "taken", "code": 409})


def test_deploy_failed_carries_the_log_tail() -> None:
    status, body, _ = run(DeployFailed("web did not become healthy", ["line 1", "line 2"]),
                          method=b"PATCH", path=b"/api/apps/x/config", body=b'{"A": "1"}')
    assert status == 422
    assert body == {"error": "web did not become healthy", "code": 422,
                    "log_tail": ["line 1", "line 2"]}


def test_disconnected_client_is_not_written_to() -> None:
    services = SimpleNamespace(settings=Settings(), controller=Faulty(Conflict("x")))
    pending: list[defer.Deferred] = []

    def later(f: Any, *a: Any) -> defer.Deferred:
        d = defer.Deferred()
        pending.append(d)
        d.addCallback(lambda _: f(*a))
        return d

    resource = ApiResource(services, run_in_thread=later)
    request = DummyRequest([b"apps"])
    request.method, request.path = b"GET", b"/api/apps"
    request.content = io.BytesIO(b"")
    request.requestHeaders.addRawHeader(b"authorization", b"Bearer k")
    resource.render(request)
    # What a real request does when the connection drops: errback notifyFinish.
    from twisted.python.failure import Failure

    request.processingFailed(Failure(ConnectionError("client went away")))
    pending[0].callback(None)
    assert request.written == []
