"""The managed HAProxy: a router whose routes change without a reload.

HAProxy runs in master-worker mode as its own daemon under
`<data_dir>/router/haproxy/`, so it keeps serving while `shipway server`
restarts; the next start adopts it through its pid file. Each app owns one
pre-declared slot backend; a route change is one batch of runtime commands
on the admin socket (`add server`/`enable server`, `add map`/`set map`/`del
map`, `set server ... state drain`), so no client connection is ever closed
by it. The app's chunk file and the host map are rewritten after each change
so that a restarted proxy comes back with the same routes; they are also the
router's only state (read back by `start`).

A replica that leaves is drained: set to `drain` (no new requests), and
deleted once its sessions reach zero or after DRAIN_TIMEOUT. Only the
router's own settings (listen address, threads) change `00-main.cfg`, which
is applied by a master-worker reload: the listening sockets are handed
over, so no connection is refused, and the old worker hands its idle
clients' next requests to the new one, so none is closed
(haproxy_handover).
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from twisted.logger import Logger
from zope.interface import implementer

from router.haproxy_conf import (CHUNK, SERVER_OPTIONS, SERVER_SLOTS, Layout, dynamic_server_name,
                                 normalize_hostname, render_chunk, render_main,
                                 slot_backend, slot_server_names)
from router.haproxy_drain import DrainMixin
from router.haproxy_overlays import MAINT_BACKEND, MAINT_FILE, OverlaysMixin, render_maintenance
from router.haproxy_process import (HAProxyProcess, RouterError, bound_ports,  # noqa: F401 (re-exported)
                                    handover_dir, maxconn, worker_user)
from router.haproxy_mapfile import MapWriter
from router.haproxy_runtime import Runtime
from router.haproxy_state import read_saved_routes, read_text
from router.interface import IRouter, Route
from router.nginx_conf import check_route
from core.settings import Settings

log = Logger()

DRAIN_TIMEOUT = 30.0
WATCH_INTERVAL = 0.5  # a dead proxy is started again within about this (issue: 2 s)
DEFAULT_SLOTS = 4 * CHUNK  # grown (by a settings-style reload) only when all are used



def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


@implementer(IRouter)
class HAProxyRouter(DrainMixin, OverlaysMixin):
    def __init__(self, settings: Settings, slots: int = DEFAULT_SLOTS, threads: int = 0,
                 binary: str = "haproxy", server_slots: int = SERVER_SLOTS,
                 https_port: int | None = None) -> None:
        """`https_port` overrides settings.https_port (0: no TLS frontend)."""
        from router.haproxy_tls import TLSManager

        self.settings = settings
        self.dir = Path(settings.data_dir) / "router" / "haproxy"
        user = worker_user()
        self.layout = Layout(dir=str(self.dir), listen_host=settings.bind_host or "127.0.0.1",
                             listen_port=settings.router_port, user=user,
                             threads=threads or settings.router_workers
                             or max(1, (os.cpu_count() or 2) // 2),
                             maxconn=maxconn(),
                             https_port=settings.https_port if https_port is None else https_port,
                             handover_dir=handover_dir(str(self.dir), shared_with_workers=bool(user)))
        self.runtime = Runtime(self.layout.admin_socket)
        # The TLS frontend's files (certificates, crt-list, ACME and
        # HTTPS-only maps) must exist before HAProxy reads its configuration.
        self.tls = TLSManager(self.layout, self.runtime) if self.layout.https_port else None
        self.process = HAProxyProcess(self.layout, self.runtime, binary)
        self.server_slots = server_slots
        self._min_slots = max(CHUNK, -(-slots // CHUNK) * CHUNK)
        self._lock = threading.RLock()
        self._routes: dict[str, Route] = {}
        self._slots: dict[str, int] = {}  # app -> slot
        self._backend_apps: dict[str, str] = {}  # slot backend -> app (app_for_backend)
        self._servers: dict[str, dict[tuple[str, int], str]] = {}  # app -> upstream -> server
        self._owners: dict[str, str] = {}  # hostname -> app
        self._nslots = self._min_slots
        # (backend, server) -> (deadline, upstream) of replicas leaving rotation
        self._draining: dict[tuple[str, str], tuple[float, tuple[str, int]]] = {}
        self._drain_wakeup = threading.Condition(self._lock)
        self._drainer: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        self._started = False
        self._wanted = False
        self._init_overlays()
        self.drain_timeout = DRAIN_TIMEOUT
        self._map_writer = MapWriter(self.layout.map_path, self._lock, self._map_entries)

    # --- IRouter -----------------------------------------------------------
    def start(self) -> None:
        """Start HAProxy from the files, or adopt the running one (reloading
        it only if the router's own settings changed)."""
        with self._lock:
            self._wanted = True
            Path(self.layout.conf_dir).mkdir(parents=True, exist_ok=True)
            if self.tls is not None:
                self.tls.prepare()
            self._map_writer.flush()  # this process's last changes, before reading back
            self._load_files()
            main = render_main(self.layout)
            before = read_text(self.layout.main_conf)
            settings_changed = before != main
            if settings_changed and self.pid() is not None:
                # A reload binds new ports with SO_REUSEPORT too: check the
                # ones the running proxy does not hold yet.
                self.process.check_ports_free(exclude=bound_ports(before))
            _write(self.layout.main_conf, main)
            # Maintenance mode's shared backend (router/haproxy_overlays.py).
            maint_path = f"{self.layout.conf_dir}/{MAINT_FILE}"
            maint = render_maintenance()
            settings_changed = settings_changed or read_text(maint_path) != maint
            _write(maint_path, maint)
            for chunk in range(self._nslots // CHUNK):
                path = self.layout.chunk_path(chunk)
                if not os.path.exists(path):
                    _write(path, render_chunk(chunk, {}, self.server_slots))
            if not os.path.exists(self.layout.map_path):
                _write(self.layout.map_path, "")
            if self.pid() is None:
                self.process.launch()
                self._reapply_overlays()  # maintenance and canaries, from memory
            else:
                if settings_changed:
                    self.reload()
                self.adopt_overlays()
            self._started = True
            if self._drainer is None or not self._drainer.is_alive():
                self._drainer = threading.Thread(target=self._drain_loop, daemon=True,
                                                 name="haproxy-drain")
                self._drainer.start()
            if self._watcher is None or not self._watcher.is_alive():
                self._watcher = threading.Thread(target=self._watch_loop, daemon=True,
                                                 name="haproxy-watch")
                self._watcher.start()

    def ensure_running(self) -> None:
        """Start HAProxy again from its files if it died (the supervisor's hook)."""
        with self._lock:
            if self._wanted and (not self._started or self.pid() is None):
                if self._started:
                    log.warn("router: haproxy is not running; starting it again")
                self.start()

    def detach(self) -> None:
        """Stop supervising the proxy and leave it serving (what a stopped
        `shipway server` does; the next control plane adopts it)."""
        with self._lock:
            self._wanted = False

    def stop(self) -> None:
        """Soft-stop HAProxy (SIGUSR1: in-flight requests finish)."""
        with self._lock:
            self._wanted = False
            self._started = False
            self.process.stop()

    def set_route(self, route: Route) -> None:
        route = Route(app=route.app,
                      hostnames=list(dict.fromkeys(normalize_hostname(h) for h in route.hostnames)),
                      upstreams=list(dict.fromkeys((h, int(p)) for h, p in route.upstreams)))
        check_route(route)
        with self._lock:
            self._ensure_started()
            old = self._routes.get(route.app)
            if old == route:
                return
            slot = self._slots.get(route.app)
            if slot is None:
                slot = self._assign_slot()
            backend = slot_backend(slot)
            # While the app is in maintenance its names lead to that backend.
            target = MAINT_BACKEND if route.app in self._maintenance else backend
            owners = self._owners
            commands: list[str] = []
            servers = dict(self._servers.get(route.app, {}))  # upstream -> server name
            for upstream in route.upstreams:
                if upstream not in servers:
                    servers[upstream] = self._take_server(backend, servers, upstream, commands)
            path = self.layout.map_path
            for host in route.hostnames:
                owner = owners.get(host)
                if owner is None:
                    commands.append(f"add map {path} {host} {target}")
                elif owner != route.app:
                    commands.append(f"set map {path} {host} {target}")
                    self._drop_hostname(owner, host)
            for host in (old.hostnames if old else []):
                if host not in route.hostnames:
                    commands.append(f"del map {path} {host}")
            leaving = {u: n for u, n in servers.items() if u not in route.upstreams}
            commands += [f"set server {backend}/{n} state drain" for n in leaving.values()]
            self.runtime.run(commands)
            for upstream, n in leaving.items():
                self._draining[(backend, n)] = (time.monotonic() + DRAIN_TIMEOUT, upstream)
                del servers[upstream]
            self._drain_wakeup.notify_all()
            self._servers[route.app] = servers
            for host in (old.hostnames if old else []):
                owners.pop(host, None)
            owners.update((h, route.app) for h in route.hostnames)
            self._routes[route.app], self._slots[route.app] = route, slot
            self._persist(slot, hostnames_changed=not old or old.hostnames != route.hostnames)
            self._after_route_change(route.app)

    def remove_route(self, app: str) -> None:
        with self._lock:
            self._ensure_started()
            old = self._routes.get(app)
            if old is None:
                return
            slot = self._slots[app]
            backend = slot_backend(slot)
            servers = self._servers.pop(app, {})
            self.runtime.run([f"del map {self.layout.map_path} {h}" for h in old.hostnames]
                             + [f"set server {backend}/{n} state drain" for n in servers.values()])
            for upstream, n in servers.items():
                self._draining[(backend, n)] = (time.monotonic() + DRAIN_TIMEOUT, upstream)
            self._drain_wakeup.notify_all()
            for host in old.hostnames:
                self._owners.pop(host, None)
            self._drop_canary_servers(app, backend)
            del self._routes[app], self._slots[app]
            self._persist(slot, hostnames_changed=True)
            self._after_route_change(app)

    # --- for the runner, the supervisor and tests ----------------------------
    def routes(self) -> dict[str, Route]:
        with self._lock:
            return dict(self._routes)

    def pid(self) -> int | None:
        return self.process.pid()

    def reload(self) -> None:
        """Apply changed settings or a new chunk of slots (see
        HAProxyProcess.reload). The new worker reads the files: the host
        map is written first (it trails route changes, MapWriter), and
        maintenance and canaries, which are in no file, are put back right
        after."""
        with self._lock:
            self._map_writer.flush()
            self.process.reload()
            self._reapply_overlays()

    # --- internals -------------------------------------------------------------
    def _ensure_started(self) -> None:
        if not self._started:
            self.start()

    def _take_server(self, backend: str, servers: dict[tuple[str, int], str],
                     upstream: tuple[str, int], commands: list[str]) -> str:
        """The server a new replica gets: the same one if it is still
        draining (back in rotation), else a free declared slot (its address
        set at run time), else one added with `add server`."""
        host, port = upstream
        for (b, name), (_, up) in list(self._draining.items()):
            if b == backend and up == upstream:
                del self._draining[(b, name)]
                commands.append(f"set server {backend}/{name} state ready")
                return name
        taken = set(servers.values()) | {n for b, n in self._draining if b == backend}
        for name in slot_server_names(self.server_slots):
            if name not in taken:
                # A free slot is in maintenance, which closed its idle
                # connections: none can reach the previous address.
                commands += [f"set server {backend}/{name} addr {host} port {port}",
                             f"set server {backend}/{name} weight 1",  # a canary may have changed it
                             f"set server {backend}/{name} state ready"]
                return name
        name = dynamic_server_name(host, port)
        commands += [f"add server {backend}/{name} {host}:{port} {SERVER_OPTIONS}",
                     f"enable server {backend}/{name}"]
        return name

    def _assign_slot(self) -> int:
        used = set(self._slots.values()) | {int(b[3:]) for b, _ in self._draining}
        for slot in range(self._nslots):
            if slot not in used:
                return slot
        # Every slot is taken: declare another chunk of backends. This is the
        # only route change that needs a reload; size `slots` to avoid it.
        chunk = self._nslots // CHUNK
        _write(self.layout.chunk_path(chunk), render_chunk(chunk, {}, self.server_slots))
        self._nslots += CHUNK
        log.warn("router: all {n} app slots used; adding {c} more (a reload)",
                 n=self._nslots - CHUNK, c=CHUNK)
        self.reload()
        return self._nslots - CHUNK

    def _drop_hostname(self, app: str, host: str) -> None:
        """A hostname moved to another app: the old owner no longer has it."""
        r = self._routes[app]
        self._routes[app] = Route(app=app, hostnames=[h for h in r.hostnames if h != host],
                                  upstreams=r.upstreams)
        self._persist(self._slots[app], hostnames_changed=False)

    def _persist(self, slot: int, hostnames_changed: bool) -> None:
        """Write what a restarted HAProxy must load: the slot's chunk file and,
        if names changed, the host map."""
        chunk = slot // CHUNK
        by_slot = {s: (a, {n: u for u, n in self._servers.get(a, {}).items()})
                   for a, s in self._slots.items() if s // CHUNK == chunk}
        _write(self.layout.chunk_path(chunk), render_chunk(chunk, by_slot, self.server_slots))
        if hostnames_changed:
            # The host map grows with the number of apps (one line per name):
            # written behind the change (coalesced, MapWriter), so that a
            # change costs the same at 10,000 apps; start() flushes it first.
            self._map_writer.changed()

    def _load_files(self) -> None:
        """Routes from the chunk files and the map (the router's only state)."""
        saved = read_saved_routes(self.layout)
        self._routes, self._servers, self._slots = saved.routes, saved.servers, saved.slots
        self._owners = {h: a for a, r in saved.routes.items() for h in r.hostnames}
        self._nslots = max(self._min_slots, saved.chunks * CHUNK)

    def _watch_loop(self) -> None:
        """Supervision of the proxy itself, faster than the runner's pass
        (which also calls ensure_running): a killed HAProxy serves again,
        with its routes and overlays, within WATCH_INTERVAL plus its start."""
        while self._wanted:
            time.sleep(WATCH_INTERVAL)
            try:
                self.ensure_running()
            except Exception:  # noqa: BLE001 (tried again next time)
                log.failure("router: haproxy could not be started again")

    def app_for_backend(self, backend: str) -> str | None:
        """The app whose slot `backend` is, for each access line: a cached
        reverse of the slot map, rebuilt only when a slot changed hands (a
        walk over every app per request cost O(apps) on the logger thread)."""
        app = self._backend_apps.get(backend)
        slot = self._slots.get(app) if app is not None else None
        if slot is not None and slot_backend(slot) == backend:
            return app
        if not (backend.startswith("app") and backend[3:].isdigit()):
            return None  # the default backend and the like: no app's
        self._backend_apps = {slot_backend(s): a for a, s in list(self._slots.items())}
        return self._backend_apps.get(backend)

    def _map_entries(self) -> list[tuple[str, str]]:
        return [(h, slot_backend(self._slots[a])) for h, a in self._owners.items()]

    def flush(self) -> None:
        """Write the host map now (tests and tools reading the files)."""
        self._map_writer.flush()
