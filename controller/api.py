"""The REST API under `/api`: one Twisted resource that matches the route
table (`controller/api_routes.py`), authenticates, parses JSON and runs the
handler in a thread.

Everything that can block (the database, password hashing, deploys) runs in
the reactor's thread pool; the reactor thread only parses the request and
writes the answer. Errors are mapped here, once (controller/http_errors.py): a user error → its status
and `{"error", "code"}`; `NotImplementedError` (a part not built yet) → 501;
anything else → 500 with a generic message and the traceback in the log only.

Deploys (config change, rollback, scale, restart) run to the end inside the
request; a client that sends `Accept: application/x-ndjson` sees their
progress lines as they happen (see `Stream`).
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Callable
from urllib.parse import unquote

import attrs
from twisted.internet import defer, reactor, threads
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from controller.api_routes import ROUTES, Route, match
from controller.api_views import ApiParts, Call, Follow
from controller.errors import BadRequest, ShipwayError, Unauthorized
from controller.http_errors import error_json, http_status
from controller.models import User

log = Logger(namespace="shipway.api")

RunInThread = Callable[..., defer.Deferred]
AUTH_CHALLENGE = b'Basic realm="shipway"'
NDJSON = b"application/x-ndjson"


@attrs.frozen
class Incoming:
    """What the worker thread needs from a request, copied on the reactor
    thread (a Twisted request must not be touched from another thread)."""

    method: str
    segments: list[str]
    authorization: str | None
    body: bytes
    wants_stream: bool = False
    query: dict[str, str] = attrs.field(factory=dict)  # first value of each
    client: str | None = None  # the peer's IP address (login throttling)


class ApiError(Exception):
    """An error answer decided before any handler runs (404, 405, 413)."""

    def __init__(self, status: int, message: str, headers: dict[bytes, bytes] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, dict(headers or {})


class ApiResource(Resource):
    """`/api/...`: a leaf resource; routing is by the table, not by children."""

    isLeaf = True

    def __init__(self, services: ApiParts, run_in_thread: RunInThread = threads.deferToThread,
                 call_on_reactor: Callable[..., Any] | None = None) -> None:
        super().__init__()
        self.services = services
        self.run_in_thread = run_in_thread
        self.call_on_reactor = call_on_reactor or reactor.callFromThread

    # Twisted calls render for every method; we dispatch ourselves.
    def render(self, request: Request) -> int:  # type: ignore[override]
        try:
            incoming = self._read(request)
            route, params = self._route(incoming)
        except ApiError as e:
            for name, value in e.headers.items():
                request.setHeader(name, value)
            _write(request, e.status, {"error": e.message, "code": e.status})
            return NOT_DONE_YET
        finished = {"gone": False}
        request.notifyFinish().addErrback(lambda _f: finished.update(gone=True))
        stream = Stream(request, finished) if route.streams and incoming.wants_stream else None
        progress = (lambda line: self.call_on_reactor(stream.line, line)) if stream else None
        d = self.run_in_thread(self._handle, route, params, incoming, progress)
        d.addCallbacks(lambda result: self._answer(request, finished, stream, *result),
                       lambda f: self._fail(request, finished, stream, route, f))
        return NOT_DONE_YET

    def _read(self, request: Request) -> Incoming:
        """Check the size first (declared, then real), then copy the request."""
        limit = self.services.settings.limits.request_body_bytes
        if getattr(request, "body_too_large", False):
            raise ApiError(413, f"request body too large (limit {limit} bytes)")
        declared = request.getHeader(b"content-length")
        if declared is not None:
            try:
                if int(declared) > limit:
                    raise ApiError(413, f"request body too large (limit {limit} bytes)")
            except ValueError:
                raise ApiError(400, "invalid Content-Length header") from None
        content = request.content
        body = b""
        if content is not None:
            content.seek(0, 2)
            if content.tell() > limit:
                raise ApiError(413, f"request body too large (limit {limit} bytes)")
            content.seek(0)
            body = content.read()
        raw_path = request.path.split(b"?", 1)[0]
        parts = raw_path.split(b"/")[2:]  # drop "" and "api"
        if parts and parts[-1] == b"":
            parts = parts[:-1]
        segments = [unquote(p.decode("utf-8", "replace")) for p in parts]
        auth = request.getHeader(b"authorization")
        return Incoming(method=request.method.decode("ascii", "replace").upper(),
                        segments=segments,
                        authorization=auth.decode("latin-1") if auth is not None else None,
                        body=body, wants_stream=NDJSON in (request.getHeader(b"accept") or b""),
                        query={k.decode("utf-8", "replace"): v[0].decode("utf-8", "replace")
                               for k, v in (request.args or {}).items() if v},
                        client=client_address(request))

    def _route(self, incoming: Incoming) -> tuple[Route, dict[str, str]]:
        found, allowed = match(incoming.method, incoming.segments)
        if found is not None:
            return found
        if allowed:
            allow = ", ".join(sorted(allowed)).encode()
            raise ApiError(405, f"method {incoming.method} not allowed here (allowed: "
                                f"{allow.decode()})", {b"Allow": allow})
        raise ApiError(404, "no such API endpoint: /api/" + "/".join(incoming.segments)[:200])

    # --- in the worker thread -----------------------------------------------
    def _handle(self, route: Route, params: dict[str, str], incoming: Incoming,
                progress: Callable[[str], None] | None) -> tuple[int, Any]:
        body = (parse_body(incoming.body, self.services.settings.limits.json_depth)
                if route.body else None)
        user = self._authenticate(incoming.authorization, incoming.client) if route.auth else None
        call = Call(services=self.services, user=user, params=params, body=body,
                    progress=progress, query=incoming.query, client=incoming.client)
        return route.status, route.handler(call)

    def _authenticate(self, header: str | None, client: str | None = None) -> User:
        controller = self.services.controller
        if not header:
            raise Unauthorized("authentication required: use your API key "
                               "(Authorization: Bearer KEY, or Basic email:KEY)")
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and value:
            return controller.user_for_api_key(value, client=client)
        if scheme.lower() == "basic" and value:
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise Unauthorized("malformed Basic credentials") from None
            email, sep, key = decoded.partition(":")
            if not sep or not key:
                raise Unauthorized("Basic credentials must be email:API key")
            if not email:  # `curl -u :KEY`
                return controller.user_for_api_key(key, client=client)
            return controller.user_for_email_and_key(email, key, client=client)
        raise Unauthorized("unsupported Authorization scheme: use Bearer or Basic")

    # --- back on the reactor thread -------------------------------------------
    def _answer(self, request: Request, finished: dict, stream: "Stream | None",
                status: int, payload: Any) -> None:
        if isinstance(payload, Follow):
            _follow(request, finished, payload)
        elif stream is not None and stream.started:
            stream.end({"result": payload})
        elif not finished["gone"]:
            _write(request, status, payload)

    def _fail(self, request: Request, finished: dict, stream: "Stream | None", route: Route,
              failure: Failure) -> None:
        status, payload = error_payload(failure, route)
        if stream is not None and stream.started:
            stream.end(payload)
            return
        if status == 401:
            request.setHeader(b"WWW-Authenticate", AUTH_CHALLENGE)
        retry_after = getattr(failure.value, "retry_after", None)
        if isinstance(retry_after, int):
            request.setHeader(b"Retry-After", str(retry_after).encode())
        if not finished["gone"]:
            _write(request, status, payload)


class Stream:
    """A deploy's progress as NDJSON: `{"log": line}` per line as it happens,
    then `{"result": answer}` or `{"error", "code"}`. The 200 and headers go
    out with the first line, so a failure before any progress (bad input, no
    permission) is still an ordinary JSON error with its status."""

    def __init__(self, request: Request, finished: dict) -> None:
        self.request, self.finished, self.started = request, finished, False

    def line(self, text: str) -> None:
        if self.finished["gone"]:
            return
        if not self.started:
            self.started = True
            self.request.setResponseCode(200)
            self.request.setHeader(b"Content-Type", NDJSON)
            self.request.setHeader(b"Cache-Control", b"no-store")
        self.request.write(json.dumps({"log": text}).encode("utf-8") + b"\n")

    def end(self, payload: dict[str, Any]) -> None:
        if not self.finished["gone"]:
            self.request.write(json.dumps(payload, default=str).encode("utf-8") + b"\n")
            self.request.finish()


def _follow(request: Request, finished: dict, follow: Follow) -> None:
    """Stream `follow` as NDJSON `{"log": line}` until the client leaves:
    the history first, then each line as it is added (on any thread), one
    streaming producer per follower (controller/api_follow.py) so a client
    that stops reading holds a bounded queue and is cut, never the others."""
    from controller.api_follow import FollowStream

    FollowStream(request, finished, follow).start()


def error_payload(failure: Failure, route: Route) -> tuple[int, dict[str, Any]]:
    """The one mapping from an exception to an HTTP answer."""
    exc = failure.value
    if isinstance(exc, ShipwayError):
        return http_status(exc), error_json(exc)
    if isinstance(exc, NotImplementedError):
        log.warn("{method} {path}: not implemented yet: {error}", method=route.method,
                 path=route.path, error=str(exc))
        return 501, {"error": f"not implemented yet: {exc}" if str(exc) else "not implemented yet",
                     "code": 501}
    log.failure("{method} {path}: unexpected error", failure, method=route.method,
                path=route.path)
    return 500, {"error": "internal server error (see the server log)", "code": 500}


def parse_body(raw: bytes, max_depth: int = 32) -> dict[str, Any]:
    """A JSON object, or {} for an empty body (every body field is optional
    or checked by its handler). Its size is bounded before (413); its
    nesting here: Python's parser recurses, so a deep body either raises
    RecursionError inside it (a 500 once) or, just under the interpreter's
    limit, hands handlers a value that would; both are a 400."""
    if not raw.strip():
        return {}
    too_deep = BadRequest(f"request body is nested too deeply (at most {max_depth} levels)")
    try:
        value = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise too_deep from None
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadRequest("request body must be a JSON object")
    if json_depth(value, max_depth) > max_depth:
        raise too_deep
    return value


def json_depth(value: Any, stop_past: int) -> int:
    """The nesting depth of a parsed JSON value (a scalar is 0), found
    without recursion; stops counting once past `stop_past`."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > stop_past:
            return deepest
        todo.extend((child, depth + 1) for child in children)
    return deepest


def client_address(request: Request) -> str | None:
    """The peer's IP address. No X-Forwarded-For: the API is reached
    directly, and a header would let a guesser pick a fresh address."""
    address = request.getClientAddress()
    host = getattr(address, "host", None)
    return host if isinstance(host, str) else None


def _write(request: Request, status: int, payload: Any) -> None:
    data = json.dumps(payload, default=str).encode("utf-8") + b"\n"
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-store")
    request.setHeader(b"Content-Length", str(len(data)).encode())
    if request.method != b"HEAD":
        request.write(data)
    request.finish()


def make_api_resource(services: ApiParts) -> Resource:
    """Mounted at `/api` by `server/web.py`."""
    return ApiResource(services)


__all__ = ["ApiResource", "ROUTES", "make_api_resource"]
