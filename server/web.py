"""The HTTP root on the API port: `/api/...`, `/slugs/...` and git smart-HTTP
at `/<app>.git/...`, and the request class that bounds request bodies."""
from __future__ import annotations

import io
from typing import Any

from twisted.web.resource import NoResource, Resource
from twisted.web.server import Request, Site

from server.services import Services
from core.settings import Limits


def body_limit(path: bytes, limits: Limits) -> int:
    """Git traffic (a push's pack, a big fetch negotiation) may be as large as
    a repository, plus room for the commands around the pack: a push over
    the repository limit then still reaches receive-pack, which refuses it
    with a message git shows, and only bigger bodies meet a bare 413.
    Everything else is an API call. These count bytes on the wire; a gzip
    body is bounded again by its inflated size where it is read."""
    path = path.split(b"?", 1)[0]
    if path.endswith(b".git/git-upload-pack"):
        # A fetch negotiation: wants and haves, never a pack. gitd/http.py
        # bounds the same body again once inflated.
        return limits.inflated_body_bytes
    if b".git/" in path:
        return limits.repo_bytes + limits.request_body_bytes
    return limits.request_body_bytes


class BoundedRequest(Request):
    """A request that stops keeping its body once it passes the limit for
    its path (declared by Content-Length, or counted as chunks arrive).
    Twisted would otherwise spool a body of any size to a temporary file
    before a handler could refuse it; the handler sees `body_too_large` and
    answers 413 with an empty body."""

    limits = Limits()
    body_too_large = False
    _body_limit = 0
    _body_seen = 0

    def gotLength(self, length: int | None) -> None:  # noqa: N802 (Twisted's name)
        # The request line is parsed, the URI not yet set on the request.
        self._body_limit = body_limit(getattr(self.channel, "_path", b"") or b"", self.limits)
        if length is not None and length > self._body_limit:
            self._refuse_body()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
        if self.body_too_large:
            return
        self._body_seen += len(data)
        if self._body_seen > self._body_limit:
            self.content.close()
            self._refuse_body()
            return
        super().handleContentChunk(data)

    def _refuse_body(self) -> None:
        self.body_too_large = True
        self.content = io.BytesIO()


def make_site(root: Resource, limits: Limits) -> Site:
    """A Site whose requests bound their bodies by `limits`."""
    request_class: Any = type("ShipwayRequest", (BoundedRequest,), {"limits": limits})
    # issue 14: no signed URL or signature reaches the access log.
    from server.access_log import redacted_log_formatter

    site = Site(root, requestFactory=request_class, logFormatter=redacted_log_formatter)
    site.displayTracebacks = False
    return site


class Root(Resource):
    def __init__(self, services: Services) -> None:
        super().__init__()
        from controller.api import make_api_resource
        from storage.http import make_slug_resource

        self.services = services
        self.putChild(b"api", make_api_resource(services))
        slug_resource = make_slug_resource(services.slugs,
                                           getattr(services.runner, "local_slugs", None))
        if slug_resource is not None:
            self.putChild(b"slugs", slug_resource)

    def getChild(self, path: bytes, request):  # noqa: N802 (Twisted's name)
        if path.endswith(b".git") and len(path) > 4:
            from gitd.http import GitRepoResource

            return GitRepoResource(self.services, path[:-4].decode("utf-8", "replace"))
        return NoResource()


def make_root(services: Services) -> Resource:
    """The HTTP root; built once at start, when git's quarantines that a
    crash left mid-push are removed (gitd/ingest.py: a live push's is locked,
    so this is safe beside another process serving the same repos)."""
    from gitd.repos import RepoStore

    RepoStore(services.settings.data_dir).sweep_all()
    return Root(services)
