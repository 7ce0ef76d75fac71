"""Runs only the container gateway listener (slug downloads and SSH keys)
of a data dir, for runner tests that drive the runner in-process: the real
`runner.gateway` and `storage.http` resources over the real controller and
slug store, in a process of its own so the tests need no reactor."""
from __future__ import annotations

import sys

from twisted.internet import reactor

from controller.store import open_controller
from runner.gateway import listen_gateway
from core.settings import load_settings
from server.web import make_site
from storage.factory import make_slug_store
from storage.http import make_slug_resource


def main() -> None:
    settings, _ = load_settings()  # SHIPWAY_* from the test's environment
    controller = open_controller(settings)
    listen_gateway(settings, make_slug_resource(make_slug_store(settings)),
                   lambda app: controller.authorized_keys(controller.app_by_name(app)),
                   make_site)
    print("ready", flush=True)
    reactor.run()


if __name__ == "__main__":
    sys.exit(main())
