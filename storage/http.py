"""`/slugs/<key>?expires=…&signature=…` on the API port: signed downloads of
the local store's slugs, streamed from disk by Twisted's file producer."""
from __future__ import annotations

from typing import Any

from twisted.web import resource, static
from twisted.web.server import Request

from storage.interface import ISlugStore
from storage.local import LocalSlugStore


class SlugResource(resource.Resource):
    isLeaf = True

    def __init__(self, store: LocalSlugStore) -> None:
        super().__init__()
        self.store = store

    def render_GET(self, request: Request) -> Any:
        key = "/".join(p.decode("utf-8", "replace") for p in request.postpath)
        expires = (request.args.get(b"expires") or [b""])[0].decode("ascii", "replace")
        signature = (request.args.get(b"signature") or [b""])[0].decode("ascii", "replace")
        if not self.store.verify(key, expires, signature):
            return resource.ForbiddenResource("invalid or expired slug URL").render(request)
        path = self.store.path(key)
        if not path.is_file():
            return resource.NoResource("no such slug").render(request)
        # static.File streams with a producer (and handles HEAD and ranges):
        # a slug is never read into memory whole.
        # The type is set here so that no Content-Encoding: gzip is guessed
        # from ".tar.gz" (clients would then unpack the slug on the fly).
        file = static.File(str(path))
        file.type, file.encoding = "application/gzip", None
        return file.render(request)

    render_HEAD = render_GET


def make_slug_resource(slugs: ISlugStore | None,
                       signed_here: LocalSlugStore | None = None) -> resource.Resource | None:
    """The resource for the slugs Shipway signs itself: `signed_here` (the
    Docker runner's: the local store, or its host cache of slugs kept in S3),
    else the local store; None when every slug URL is an S3 presigned one."""
    if signed_here is None and isinstance(slugs, LocalSlugStore):
        signed_here = slugs
    return SlugResource(signed_here) if signed_here is not None else None
