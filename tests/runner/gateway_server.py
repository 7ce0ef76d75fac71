"""Runs only the container gateway listener (slug downloads and SSH keys)
of a data dir, for runner tests that drive the runner in-process: the real
`runner.gateway` and `storage.http` resources over the real controller and
slug store, in a process of its own so the tests need no reactor."""
from __future__ import annotations

import sys

from twisted.internet import reactor

from controller.store import open_controller
from runner.gateway import listen_gateway
from server.services import Services
from server.settings import load_settings
from storage.factory import make_slug_store


def main() -> None:
    settings, _ = load_settings()  # SHIPWAY_* from the test's environment
    controller = open_controller(settings)
    services = Services(settings=settings, controller=controller,
                        slugs=make_slug_store(settings), builder=None, router=None,
                        runner=None, pipeline=None)
    listen_gateway(services)
    print("ready", flush=True)
    reactor.run()


if __name__ == "__main__":
    sys.exit(main())
