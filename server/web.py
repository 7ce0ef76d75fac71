"""The HTTP root on the API port: `/api/...`, `/slugs/...` and git smart-HTTP
at `/<app>.git/...`."""
from __future__ import annotations

from twisted.web.resource import NoResource, Resource

from server.services import Services


class Root(Resource):
    def __init__(self, services: Services) -> None:
        super().__init__()
        from controller.api import make_api_resource
        from storage.http import make_slug_resource

        self.services = services
        self.putChild(b"api", make_api_resource(services))
        slug_resource = make_slug_resource(services)
        if slug_resource is not None:
            self.putChild(b"slugs", slug_resource)

    def getChild(self, path: bytes, request):  # noqa: N802 (Twisted's name)
        if path.endswith(b".git") and len(path) > 4:
            from gitd.http import GitRepoResource

            return GitRepoResource(self.services, path[:-4].decode("utf-8", "replace"))
        return NoResource()


def make_root(services: Services) -> Resource:
    return Root(services)
