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
from core.settings import Settings

ME = User(id=1, email="me@example.com", created_at=None)  # type: ignore[arg-type]


class Faulty:
    """Authenticates anyone; `list_apps` raises the injected exception."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def user_for_api_key(self, key: str, client: str | None = None) -> User:
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


class Deploying:
    """Authenticates anyone; `set_config` reports progress lines then returns
    (or raises the injected failure) — as the real deployer's output does."""

    def __init__(self, lines: list[str], exc: BaseException | None = None) -> None:
        self.lines, self.exc = lines, exc

    def user_for_api_key(self, key: str, client: str | None = None) -> User:
        return ME

    def set_config(self, user: User, app: str, values: dict, output: Any) -> None:
        for line in self.lines:
            output(line)
        if self.exc is not None:
            raise self.exc
        return None

    def get_config(self, user: User, app: str) -> dict:
        return {"A": "1"}


def stream(controller: Any, accept: bytes = b"application/x-ndjson") -> DummyRequest:
    services = SimpleNamespace(settings=Settings(), controller=controller)
    resource = ApiResource(services, run_in_thread=lambda f, *a: defer.maybeDeferred(f, *a),
                           call_on_reactor=lambda f, *a: f(*a))
    request = DummyRequest([b"apps", b"x", b"config"])
    request.method, request.path = b"PATCH", b"/api/apps/x/config"
    request.content = io.BytesIO(b'{"A": "1"}')
    request.requestHeaders.addRawHeader(b"authorization", b"Bearer k")
    request.requestHeaders.addRawHeader(b"accept", accept)
    resource.render(request)
    assert request.finished
    return request


def ndjson(request: DummyRequest) -> list[dict]:
    return [json.loads(line) for line in b"".join(request.written).splitlines()]


def test_deploy_progress_streams_as_ndjson() -> None:
    request = stream(Deploying(["building", "starting web.1"]))
    assert request.responseCode == 200
    assert request.responseHeaders.getRawHeaders(b"content-type") == [b"application/x-ndjson"]
    assert ndjson(request) == [
        {"log": "building"}, {"log": "starting web.1"},
        {"result": {"config": {"A": "1"}, "release": None, "log": ["building", "starting web.1"]}},
    ]


def test_failure_after_progress_ends_the_stream_with_the_error() -> None:
    request = stream(Deploying(["starting web.1"], DeployFailed("web crashed", ["boom"])))
    assert ndjson(request) == [{"log": "starting web.1"},
                               {"error": "web crashed", "code": 422, "log_tail": ["boom"]}]


def test_failure_before_progress_keeps_its_status() -> None:
    request = stream(Deploying([], Conflict("busy")))
    assert request.responseCode == 409
    assert json.loads(b"".join(request.written)) == {"error": "busy", "code": 409}


def test_without_the_accept_header_the_answer_is_plain_json() -> None:
    request = stream(Deploying(["building"]), accept=b"application/json")
    assert request.responseCode == 200
    assert json.loads(b"".join(request.written))["log"] == ["building"]
