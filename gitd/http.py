"""Smart HTTP on the API port: `/<app>.git/info/refs`, `/<app>.git/git-
receive-pack`, `/<app>.git/git-upload-pack`, with HTTP Basic (email, API
key). A missing or wrong credential gets 401 with `WWW-Authenticate`, so git
asks for one or takes it from ~/.netrc.

The response streams (chunked) as the handler writes it, so the pipeline's
progress reaches the pusher line by line; Twisted spools the request body
to a temp file before we see it, so a big pack costs disk, not memory.
A gzip-encoded body is inflated as it is read, bounded by its uncompressed
size (gitd/body.py): never read whole.
"""
from __future__ import annotations

from typing import Any

from dulwich.protocol import pkt_line
from twisted.internet import threads
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from controller.errors import NotFound, ShipwayError, Unauthorized
from controller.login_throttle import LoginThrottled
from gitd.body import BadBody, BodyTooLarge, RequestBody, is_gzip
from gitd.bridge import ThreadOutput
from gitd.receive import ProtocolFailure
from gitd.service import SERVICES, GitParts, git_service
from gitd.upload import run_upload_pack

log = Logger()

OPTION_HEADERS = {b"shipway-hot": "hot", b"shipway-clean": "clean"}


def _body(request: Any, limit: int) -> RequestBody:
    """The request body as a stream of at most `limit` (inflated) bytes."""
    return RequestBody(request.content, is_gzip(request.getHeader(b"content-encoding")), limit)


def _check_size(request: Any, limit: int) -> None:
    """Inflate the body once, keeping nothing, to refuse it before a git
    process starts: a fetch negotiation is small, a bomb is not."""
    body = _body(request, limit)
    while body.read(256 * 1024):
        pass


class _ResponseStream(ThreadOutput):
    """ThreadOutput onto an HTTP response that can still turn into an error
    until its first byte is written."""

    def __init__(self, request: Any, content_type: bytes) -> None:
        super().__init__(self._send)
        self.request = request
        self.content_type = content_type
        self.started = False
        request.notifyFinish().addBoth(lambda _: self.close())
        if getattr(request, "_disconnected", False):  # gone before we started
            self.close()

    def _send(self, data: bytes) -> None:
        if not self.started:
            self.started = True
            self.request.setHeader(b"content-type", self.content_type)
            self.request.setHeader(b"cache-control", b"no-cache")
            self.request.registerProducer(self, True)
        self.request.write(data)

    def end(self, status: int = 200, message: str = "") -> None:
        """Reactor thread: finish, or answer `status` if nothing was sent."""
        if self.closed:
            return
        if self.started:
            self.request.unregisterProducer()
        elif status != 200:
            self.request.setResponseCode(status)
            self.request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            self.request.write((message + "\n").encode())
        else:
            self.request.setHeader(b"content-type", self.content_type)
        self.close()
        self.request.finish()


def _log_stderr(data: bytes) -> None:
    log.info("gitd http upload-pack: {err}", err=data.decode("utf-8", "replace").strip())


class GitRepoResource(Resource):
    isLeaf = True

    def __init__(self, services: GitParts, app_name: str) -> None:
        super().__init__()
        self.git = git_service(services)
        self.controller = services.controller
        self.services_limits = services.settings.limits
        limits = self.services_limits
        # Inflated size bounds: a fetch negotiation is small; a push carries
        # a pack, bounded by the repository limit as on the wire.
        self.upload_body_bytes = limits.inflated_body_bytes
        self.receive_body_bytes = limits.repo_bytes + limits.request_body_bytes
        self.app_name = app_name

    def render(self, request: Any) -> Any:
        path = b"/".join(request.postpath)
        method = request.method
        if path == b"info/refs" and method in (b"GET", b"HEAD"):
            service = (request.args.get(b"service") or [b""])[0].decode("ascii", "replace")
            if service not in SERVICES:
                return self._plain(request, 403, "smart HTTP only: use a git client >= 1.6.6")
            action = "advertise"
        elif path in (b"git-receive-pack", b"git-upload-pack") and method == b"POST":
            service, action = path.decode(), "rpc"
            if getattr(request, "body_too_large", False):
                if service == "git-upload-pack":
                    return self._plain(request, 413, f"fetch request larger than "
                                                     f"{self.upload_body_bytes} bytes")
                limit = self.services_limits.repo_bytes
                return self._plain(request, 413, f"request larger than the repository size "
                                                 f"limit ({limit} bytes)")
        else:
            return self._plain(request, 404, "not found")
        email, key = request.getUser(), request.getPassword()
        if not email or not key:
            return self._challenge(request)
        d = threads.deferToThread(self._authorize, email.decode("utf-8", "replace"),
                                  key.decode("utf-8", "replace"), service,
                                  getattr(request.getClientAddress(), "host", None))
        d.addCallback(lambda auth: self._serve(request, service, action, *auth))
        d.addErrback(self._refused, request)
        return NOT_DONE_YET

    # --- auth -----------------------------------------------------------------
    def _authorize(self, email: str, key: str, service: str,
                   client: str | None = None) -> tuple[Any, Any]:
        user = self.git.authenticate(email, key, client)  # throttled (issue 14)
        return user, self.git.authorize(user, self.app_name, service)

    def _challenge(self, request: Any) -> bytes:
        request.setHeader(b"www-authenticate", b'Basic realm="shipway"')
        return self._plain(request, 401, "authentication required (email and API key)")

    def _refused(self, failure: Any, request: Any) -> None:
        if request.finished or getattr(request, "_disconnected", False):
            return
        if failure.check(LoginThrottled):  # issue 14: too many failed logins
            request.setHeader(b"retry-after", str(failure.value.retry_after).encode())
            request.write(self._plain(request, 429, f"shipway: {failure.value}"))
        elif failure.check(Unauthorized):
            request.write(self._challenge(request))
        elif failure.check(NotFound, ShipwayError):
            request.write(self._plain(request, 404, "repository not found"))
        else:
            log.failure("gitd http: request failed", failure)
            request.write(self._plain(request, 500, "internal error"))
        request.finish()

    @staticmethod
    def _plain(request: Any, status: int, message: str) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return (message + "\n").encode()

    # --- services --------------------------------------------------------------
    def _serve(self, request: Any, service: str, action: str, user: Any, app: Any) -> None:
        kind = b"advertisement" if action == "advertise" else b"result"
        stream = _ResponseStream(request, b"application/x-%s-%s" % (service.encode(), kind))
        if service == "git-upload-pack":
            def run() -> None:
                argv, env = self.git.upload_pack_argv(app, stateless=True,
                                                      advertise=action == "advertise")
                if action == "advertise":
                    stream.write(pkt_line(b"# service=git-upload-pack\n") + pkt_line(None))
                    body: RequestBody | bytes = b""
                else:
                    _check_size(request, self.upload_body_bytes)
                    body = _body(request, self.upload_body_bytes)
                code = run_upload_pack(argv, env, body, stream.write, _log_stderr)
                if code != 0 and not stream.started:
                    raise ProtocolFailure("upload-pack failed")
        elif action == "advertise":
            def run() -> None:
                stream.write(pkt_line(b"# service=git-receive-pack\n") + pkt_line(None))
                handler = self.git.receive_pack(app, user, source=_body(request, 0),
                                                read=lambda n: b"", write=stream.write)
                handler.advertise()
        else:
            headers = frozenset(opt for name, opt in OPTION_HEADERS.items()
                                if (request.getHeader(name) or b"").strip().lower()
                                in (b"true", b"1", b"yes"))

            def run() -> None:
                source = _body(request, self.receive_body_bytes)
                handler = self.git.receive_pack(app, user, source=source, read=source.read,
                                                write=stream.write, stateless=True,
                                                header_options=headers)
                handler.handle()

        def failed(failure: Any) -> None:
            if stream.closed:
                # The client hung up (Twisted then closes the body, and every
                # write fails): nothing of ours broke. One line, no traceback.
                log.info("gitd http: {app} {service}: the client hung up ({reason})",
                         app=self.app_name, service=service,
                         reason=str(failure.value)[:200] or failure.type.__name__)
                stream.end()
            elif failure.check(BodyTooLarge):
                log.info("gitd http: {app} {service} refused: {reason}", app=self.app_name,
                         service=service, reason=failure.value)
                stream.end(413, f"shipway: {failure.value}")
            elif failure.check(ProtocolFailure, OSError, EOFError, BadBody):
                stream.end(400, f"shipway: {failure.value}")
            else:
                log.failure("gitd http: receive-pack crashed", failure)
                stream.end(500, "internal error")

        threads.deferToThread(run).addCallbacks(lambda _: stream.end(), failed)
