"""Maintenance mode and canaries for the HAProxy router, changed at run time.

Both are "overlays" on an app's route, kept apart from the route itself:

- **Maintenance**: the app's hostnames point (`set map`) to one shared
  backend that answers 503 with `Retry-After` and a plain page; the app's
  replicas stay in its slot backend, so `off` points the names back at once.
- **Canary** (Gigalixir's `canary:set`): the other app's replicas are added to
  the app's backend (`add server`, names `c_...`) and weights are set so
  that they get N % of the requests. A change of either app's replicas
  recomputes the weights.

Neither is written to the chunk files or the host map (which hold the routes
only, so that `_load_files` reads plain routes back): the control plane keeps
them in memory (and the controller in the database), and puts them back
right after the proxy is started again (`_reapply_overlays`). A proxy
adopted at server start is read back with `adopt_overlays` so that the
controller's re-application finds its canary servers.
"""
from __future__ import annotations

import math
import re
import time

from twisted.logger import Logger

from router.haproxy_conf import SERVER_OPTIONS, slot_backend
from router.haproxy_process import RouterError

log = Logger()

MAINT_BACKEND = "shipway_maintenance"
MAINT_FILE = "40-shipway-maintenance.cfg"
RETRY_AFTER = 120  # seconds, in the maintenance answer
MAX_WEIGHT = 256  # HAProxy's largest server weight

_MAINT_PAGE = ("503 Service Unavailable: this app is in maintenance mode. "
               "Please try again in a few minutes.\n")


def render_maintenance() -> str:
    """The shared maintenance backend (its own file, read with the rest)."""
    return f"""# Rendered by Shipway's router: the answer of apps in maintenance mode.
backend {MAINT_BACKEND}
    http-request return status 503 content-type text/plain hdr Retry-After {RETRY_AFTER} hdr Cache-Control no-store string "{_MAINT_PAGE.strip()}"
"""


def canary_server_name(host: str, port: int) -> str:
    return "c_" + re.sub(r"[^0-9A-Za-z]", "_", host) + f"_{int(port)}"


def canary_weights(own: int, canary: int, percent: int) -> tuple[int, int]:
    """Per-server weights (own replicas, canary replicas) so that the canary
    replicas together get `percent` % of the requests (HAProxy weights are
    0..256, so the split is rounded when there are many replicas)."""
    if own == 0 or canary == 0:
        return 1, 1
    a, c = (100 - percent) * canary, percent * own
    if a and c:
        g = math.gcd(a, c)
        a, c = a // g, c // g
    else:
        a, c = (1 if a else 0), (1 if c else 0)
    top = max(a, c)
    if top > MAX_WEIGHT:
        f = MAX_WEIGHT / top
        a = max(1, round(a * f)) if a else 0
        c = max(1, round(c * f)) if c else 0
    return a, c


class OverlaysMixin:
    """Maintenance and canary for HAProxyRouter (which provides _lock,
    _routes, _slots, _servers, _draining, runtime, layout)."""

    def _init_overlays(self) -> None:
        self._maintenance: set[str] = set()
        self._canary: dict[str, tuple[str, int]] = {}  # app -> (other app, percent)
        # app -> canary upstream -> server name in the app's backend
        self._canary_servers: dict[str, dict[tuple[str, int], str]] = {}

    # --- the router's API -------------------------------------------------
    def set_maintenance(self, app: str, on: bool) -> None:
        """Answer 503 (Retry-After) for the app's names, or serve it again."""
        with self._lock:
            self._ensure_started()
            if on:
                self._maintenance.add(app)
            else:
                self._maintenance.discard(app)
            route = self._routes.get(app)
            if route is not None:
                target = self._map_target(app)
                self.runtime.run([f"set map {self.layout.map_path} {h} {target}"
                                  for h in route.hostnames])

    def set_canary(self, app: str, canary: str | None, percent: int = 0) -> None:
        """Send `percent` % of the app's requests to `canary`'s replicas
        (None: no canary)."""
        if canary is not None and not 0 <= int(percent) <= 100:
            raise RouterError("a canary weight is 0 to 100")
        with self._lock:
            self._ensure_started()
            if canary is None:
                self._canary.pop(app, None)
            else:
                self._canary[app] = (canary, int(percent))
            self._sync_canary(app)

    def maintenance(self) -> set[str]:
        with self._lock:
            return set(self._maintenance)

    def canaries(self) -> dict[str, tuple[str, int]]:
        with self._lock:
            return dict(self._canary)

    # --- used by HAProxyRouter ----------------------------------------------
    def _map_target(self, app: str) -> str:
        if app in self._maintenance:
            return MAINT_BACKEND
        return slot_backend(self._slots[app])

    def _after_route_change(self, app: str) -> None:
        """The app's replicas (or its route) changed: recompute its canary
        and those of apps that send a share to it."""
        for a, (other, _) in list(self._canary.items()):
            if a == app or other == app:
                self._sync_canary(a)

    def _drop_canary_servers(self, app: str, backend: str) -> None:
        """The app leaves its slot: its canary servers drain with the rest."""
        servers = self._canary_servers.pop(app, {})
        if servers:
            self.runtime.run([f"set server {backend}/{n} state drain" for n in servers.values()])
        for upstream, n in servers.items():
            self._draining[(backend, n)] = (time.monotonic() + self.drain_timeout, upstream)

    def _reapply_overlays(self) -> None:
        """The proxy was started again from its files: put maintenance
        states and canaries back."""
        self._canary_servers = {}
        for app in list(self._maintenance):
            route = self._routes.get(app)
            if route is not None:
                self.runtime.run([f"set map {self.layout.map_path} {h} {MAINT_BACKEND}"
                                  for h in route.hostnames])
        for app in list(self._canary):
            self._sync_canary(app)

    def adopt_overlays(self) -> None:
        """Read the canary servers of an adopted proxy back (by name), so
        that re-applying a canary updates them instead of adding twice."""
        by_backend = {slot_backend(s): a for a, s in self._slots.items()}
        out = self.runtime.raw("show servers state")
        self._canary_servers = {}
        for line in out.splitlines():
            fields = line.split()
            if len(fields) > 18 and fields[1] in by_backend and fields[3].startswith("c_"):
                app = by_backend[fields[1]]
                self._canary_servers.setdefault(app, {})[(fields[4], int(fields[18]))] = fields[3]

    # --- internals -------------------------------------------------------
    def _sync_canary(self, app: str) -> None:
        if app not in self._slots:
            return  # not routed yet: applied at its first route
        backend = slot_backend(self._slots[app])
        other, percent = self._canary.get(app, (None, 0))
        wanted = list(self._routes[other].upstreams) if other in self._routes else []
        current = self._canary_servers.setdefault(app, {})
        own = self._servers.get(app, {})
        commands: list[str] = []
        for upstream in wanted:
            if upstream not in current:
                host, port = upstream
                name = canary_server_name(host, port)
                back = [k for k, v in self._draining.items() if k == (backend, name)]
                if back:
                    del self._draining[back[0]]
                    commands.append(f"set server {backend}/{name} state ready")
                else:
                    commands += [f"add server {backend}/{name} {host}:{port} {SERVER_OPTIONS}",
                                 f"enable server {backend}/{name}"]
                current[upstream] = name
        leaving = {u: n for u, n in current.items() if u not in wanted}
        commands += [f"set server {backend}/{n} state drain" for n in leaving.values()]
        a, c = canary_weights(len(own), len(wanted), percent) if other else (1, 1)
        commands += [f"set server {backend}/{n} weight {a}" for n in own.values()]
        commands += [f"set server {backend}/{n} weight {c}"
                     for u, n in current.items() if u not in leaving]
        self.runtime.run(commands)
        for upstream, n in leaving.items():
            self._draining[(backend, n)] = (time.monotonic() + self.drain_timeout, upstream)
            del current[upstream]
        if not current:
            self._canary_servers.pop(app, None)
        self._drain_wakeup.notify_all()
