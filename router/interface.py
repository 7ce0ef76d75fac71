"""The router contract."""
from __future__ import annotations

import attrs
from zope.interface import Interface


@attrs.frozen
class Route:
    app: str
    hostnames: list[str]  # APP.<base domain> plus custom domains
    upstreams: list[tuple[str, int]]  # ("127.0.0.1", port) of healthy web replicas


class IRouter(Interface):
    def start() -> None:
        """Start (or adopt) the managed nginx."""

    def stop() -> None:
        """Stop nginx."""

    def set_route(route: Route) -> None:
        """Create or replace one app's route and reload gracefully; returns
        once nginx serves the new config."""

    def remove_route(app: str) -> None:
        """Drop an app's route and reload."""

    # Issue 16 (router/haproxy.py): a router changed at run time drains the
    # replicas a change takes out of rotation before they may be stopped.
    def wait_drained(timeout: float) -> bool:
        """Wait until every replica taken out of rotation has finished its
        in-flight requests and left the proxy; False if some still run."""

    def ensure_running() -> None:
        """Start the proxy again, with its routes, if it died (supervision)."""

    # Issue 16, item 5: overlays on an app's route, kept by the router across
    # route changes and put back after the proxy restarts.
    def set_maintenance(app: str, on: bool) -> None:
        """Answer 503 with Retry-After for the app's names (its replicas
        keep running), or serve it again at once."""

    def set_canary(app: str, canary: str | None, percent: int = 0) -> None:
        """Send `percent` % of the app's requests to the replicas of the app
        `canary` (None: no canary)."""


class NoOverlays:
    """For a router without maintenance mode or canaries (the nginx one,
    kept as the benchmarks' peer): a clear refusal."""

    def set_maintenance(self, app: str, on: bool) -> None:
        raise RuntimeError("maintenance mode needs the haproxy router (SHIPWAY_ROUTER_PROXY)")

    def set_canary(self, app: str, canary: str | None, percent: int = 0) -> None:
        raise RuntimeError("canaries need the haproxy router (SHIPWAY_ROUTER_PROXY)")
