"""Serve one data dir's slugs on a port with the real SlugResource (run as a
subprocess by the storage tests: a real HTTP server, not a fake request)."""
from __future__ import annotations

import sys
from pathlib import Path

from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

from core.settings import Settings
from storage.http import make_slug_resource
from storage.local import LocalSlugStore

if __name__ == "__main__":
    data_dir, port = Path(sys.argv[1]), int(sys.argv[2])
    store = LocalSlugStore(Settings(data_dir=data_dir, http_port=port))
    root = Resource()
    root.putChild(b"slugs", make_slug_resource(store))
    reactor.listenTCP(port, Site(root), interface="127.0.0.1")
    print("listening", flush=True)
    reactor.run()
