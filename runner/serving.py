"""Which release of an app serves now, read from what runs and what the
router routes (not from the runner's bookkeeping): asked at start, before
adoption, to settle a release a crash left `deploying` (controller/settle.py)."""
from __future__ import annotations

from typing import Iterable

from router.interface import Route


def serving_version(replicas: Iterable[tuple[int, str, bool, int | None]],
                    route: Route | None) -> int | None:
    """`replicas`: (version, state, stopping, host port) of the app's
    containers. The release of the running replicas the route sends traffic
    to; for an app without a routed replica (workers only), the release of
    its running replicas that are not being stopped. None when there is
    none, or more than one release (a deploy cut off before it switched)."""
    running = [(v, port) for v, state, stopping, port in replicas
               if state == "running" and not stopping]
    ports = {port for _host, port in (route.upstreams if route else [])}
    routed = {v for v, port in running if port is not None and port in ports}
    if routed:
        return routed.pop() if len(routed) == 1 else None
    if ports:  # routed to something that does not run: nothing proven
        return None
    versions = {v for v, _port in running}
    return versions.pop() if len(versions) == 1 else None
