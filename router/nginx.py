"""The managed nginx: Shipway's router process and its control plane.

nginx runs as its own daemon (its own session, pid file and prefix under
`<data_dir>/router/`), so it keeps serving apps while `shipway server` is
stopped, restarted or killed; the next start adopts it through the pid file
(and its routes through `routes.json`). Only `stop()` (`shipway server
stop-router`; SIGQUIT: in-flight requests finish) takes it down.

Every change renders the whole configuration to a new file, checks it with
`nginx -t`, moves it into place atomically and reloads with SIGHUP: nginx
starts workers on the new configuration and lets the old ones finish their
in-flight requests. `set_route` returns once fresh connections are answered
by the new configuration; `wait_drained` then waits for the old workers to
finish what they were serving, which is what a caller must wait for before
stopping the replicas the old configuration pointed at (the runner does that
in the background, so a long request or a WebSocket never slows a deploy).
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterable

from twisted.logger import Logger
from zope.interface import implementer

from router.interface import IRouter, NoOverlays, Route
from router.nginx_conf import GENERATION_HEADER, GENERATION_HOST, Layout, check_route, render
from core.settings import Settings

log = Logger()

APPLY_TIMEOUT = 15.0  # seconds for new workers to answer after a reload


class RouterError(RuntimeError):
    """nginx refused a configuration or did not come up."""


def _worker_user() -> str | None:
    """A root master must hand its workers to an unprivileged user."""
    if os.geteuid() != 0:
        return None
    try:
        import grp

        grp.getgrnam("nogroup")
        return "nobody nogroup"
    except KeyError:
        return "nobody"


def _children(pid: int) -> set[int]:
    """Processes whose parent is `pid` (nginx's workers)."""
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces.
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.add(int(entry))
    return found


def _is_nginx(pid: int) -> bool:
    """A live nginx process (a drained worker's pid may be reused)."""
    if not _alive(pid):
        return False
    try:
        return b"nginx" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _shutting_down(pid: int) -> bool:
    """An nginx worker that has begun its graceful exit (its process title)."""
    try:
        return b"shutting down" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # gone


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3] != b"Z"
    except OSError:
        return False


@implementer(IRouter)
class NginxRouter(NoOverlays):  # issue 16: the benchmarks' peer
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = Path(settings.data_dir) / "router"
        listen = settings.bind_host or "127.0.0.1"
        self.layout = Layout(prefix=str(self.dir), listen_host=listen,
                             listen_port=settings.router_port, worker_user=_worker_user(),
                             workers=settings.router_workers or max(1, (os.cpu_count() or 2) // 2))
        # The address the control plane probes nginx on.
        self.probe_host = "127.0.0.1" if listen in ("0.0.0.0", "127.0.0.1") else listen
        self._state_path = self.dir / "routes.json"
        self._lock = threading.RLock()
        self._routes: dict[str, Route] = {}
        self._generation = 0
        self._started = False
        self._wanted = False  # start() was called, stop() was not
        # A configuration installed (and in routes.json) that nginx did not
        # confirm it runs: the next change applies even if it looks the same.
        self._dirty = False
        self._draining: set[int] = set()  # old workers finishing requests

    # --- IRouter ---------------------------------------------------------
    def start(self) -> None:
        """Start nginx, or adopt the one a previous server left running. Its
        routes are kept (loaded from the state file) until the runner sets
        them again, so apps stay served across a restart of the server."""
        with self._lock:
            self._wanted = True
            for sub in ("logs", "tmp"):
                (self.dir / sub).mkdir(parents=True, exist_ok=True)
            self._load_state()
            self._apply(self._routes)
            self._started = True

    def ensure_running(self) -> None:
        """Start nginx again if it died or never came up (the supervisor
        calls this on each pass), with the routes last set; nothing after a
        clean stop()."""
        with self._lock:
            if not self._wanted:
                return
            if not self._started:
                self.start()
            elif self.pid() is None:
                log.warn("router: nginx is not running; starting it again")
                self._apply(self._routes)

    def stop(self) -> None:
        """Stop nginx gracefully (SIGQUIT: in-flight requests finish)."""
        with self._lock:
            self._wanted = False
            pid = self.pid()
            if pid is None:
                return
            os.kill(pid, signal.SIGQUIT)
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
            self._started = False

    def set_route(self, route: Route) -> None:
        check_route(route)
        with self._lock:
            self._ensure_started()
            if self._routes.get(route.app) == route and not self._dirty:
                return
            routes = dict(self._routes)
            routes[route.app] = route
            self._apply(routes)

    def remove_route(self, app: str) -> None:
        with self._lock:
            self._ensure_started()
            if app not in self._routes and not self._dirty:
                return
            routes = dict(self._routes)
            routes.pop(app, None)  # may be gone already if only dirty
            self._apply(routes)

    def _ensure_started(self) -> None:
        """A route change that comes before `start()` (a deploy during boot)
        must not render a configuration without the saved routes."""
        if not self._started:
            self.start()

    # --- for the runner and tests ---------------------------------------
    def routes(self) -> dict[str, Route]:
        with self._lock:
            return dict(self._routes)

    def pid(self) -> int | None:
        """The master's pid if our nginx is running (checked, not trusted:
        a stale pid file may name an unrelated process after a reboot)."""
        try:
            pid = int(Path(self.layout.pid).read_text().strip())
        except (OSError, ValueError):
            return None
        if not _alive(pid):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            return None
        if b"nginx" not in cmdline or self.layout.conf.encode() not in cmdline:
            return None
        return pid

    def generation(self) -> int | None:
        """The configuration generation a fresh connection is served by."""
        conn = http.client.HTTPConnection(self.probe_host, self.settings.router_port, timeout=2)
        try:
            conn.request("GET", "/", headers={"Host": GENERATION_HOST})
            resp = conn.getresponse()
            resp.read()
            value = resp.getheader(GENERATION_HEADER)
            return int(value) if value else None
        except (OSError, http.client.HTTPException, ValueError):
            return None
        finally:
            conn.close()

    # --- internals ---------------------------------------------------------
    def _apply(self, routes: dict[str, Route]) -> None:
        """Render, check, install and load `routes`. If nginx refuses the
        configuration, the running one and the in-memory routes stay as they
        were. Once it is installed, the routes are the new ones (a reload
        may still take them); if nginx then does not confirm in time, the
        router stays dirty and the next change applies in full."""
        generation = self._generation + 1
        text = render(self.layout, routes.values(), generation)
        candidate = Path(self.layout.conf + ".new")
        candidate.write_text(text)
        check = subprocess.run(self._cmd(str(candidate)) + ["-t", "-q"],
                               capture_output=True, text=True)
        if check.returncode != 0:
            candidate.unlink(missing_ok=True)
            raise RouterError(f"nginx rejected the configuration: {check.stderr.strip()}")
        os.replace(candidate, self.layout.conf)
        self._routes, self._generation = dict(routes), generation
        self._save_state()
        self._dirty = True

        pid = self.pid()
        if pid is None:
            self._launch()
            self._wait_generation(generation)
            log.info("router: nginx started on {host}:{port} (generation {g})",
                     host=self.layout.listen_host, port=self.layout.listen_port, g=generation)
        else:
            old_workers = _children(pid)
            os.kill(pid, signal.SIGHUP)
            self._wait_generation(generation)
            self._wait_not_accepting(old_workers)
            self._draining |= old_workers
        self._dirty = False

    def wait_drained(self, timeout: float) -> bool:
        """Wait until the workers of every replaced configuration have
        finished their requests and exited; False if some still run."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                self._draining = {w for w in self._draining if _is_nginx(w)}
                if not self._draining:
                    return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def _cmd(self, conf: str) -> list[str]:
        binary = shutil.which(self.settings.nginx_binary) or self.settings.nginx_binary
        return [binary, "-p", self.layout.prefix + "/", "-c", conf, "-e", self.layout.error_log]

    def _launch(self) -> None:
        self._stop_orphaned_workers()
        Path(self.layout.pid).unlink(missing_ok=True)
        # nginx daemonizes itself (fork + setsid): the master outlives us.
        result = subprocess.run(self._cmd(self.layout.conf), capture_output=True, text=True,
                                start_new_session=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise RouterError(f"nginx did not start: {result.stderr.strip()}")
        deadline = time.monotonic() + APPLY_TIMEOUT
        while self.pid() is None:
            if time.monotonic() > deadline:
                raise RouterError(f"nginx did not write its pid file:\n{self._error_tail()}")
            time.sleep(0.02)

    def _stop_orphaned_workers(self) -> None:
        """Workers of a master of ours that was killed (SIGKILL, OOM) serve
        on with the old routes and hold the listening socket, so that a new
        nginx cannot bind: they are found by the error log they hold open
        (nothing else's is ours) and stopped, SIGTERM then SIGKILL."""
        ours = os.path.realpath(self.layout.error_log)
        orphans = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if not Path(f"/proc/{entry}/cmdline").read_bytes().startswith(b"nginx:"):
                    continue
                fds = os.listdir(f"/proc/{entry}/fd")
                if any(os.readlink(f"/proc/{entry}/fd/{fd}") == ours for fd in fds):
                    orphans.add(int(entry))
            except OSError:
                continue
        if not orphans:
            return
        log.warn("router: stopping nginx workers {pids} left by a killed master",
                 pids=sorted(orphans))
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in orphans:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and any(_alive(p) for p in orphans):
                time.sleep(0.02)
            orphans = {p for p in orphans if _alive(p)}
            if not orphans:
                return

    def _wait_generation(self, generation: int) -> None:
        """A fresh connection served by the new generation: new workers run."""
        deadline = time.monotonic() + APPLY_TIMEOUT
        while True:
            current = self.generation()
            if current is not None and current >= generation:
                return
            if time.monotonic() > deadline:
                raise RouterError(f"nginx did not load generation {generation}:\n"
                                  f"{self._error_tail()}")
            time.sleep(0.01)

    def _wait_not_accepting(self, old_workers: set[int]) -> None:
        """Until every worker of the replaced configuration has stopped
        accepting connections: nginx renames a worker "is shutting down"
        just before it closes its listening sockets, and a worker that is
        gone accepts nothing. Before that, a fresh connection could still
        land on an old worker and see the old routes."""
        deadline = time.monotonic() + APPLY_TIMEOUT
        waiting = set(old_workers)
        while True:
            waiting = {w for w in waiting if _is_nginx(w) and not _shutting_down(w)}
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise RouterError(f"nginx workers {sorted(waiting)} of the old configuration "
                                  f"did not stop accepting:\n{self._error_tail()}")
            time.sleep(0.005)

    def _error_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(Path(self.layout.error_log).read_text(errors="replace")
                             .splitlines()[-lines:])
        except OSError:
            return ""

    def _load_state(self) -> None:
        try:
            state = json.loads(self._state_path.read_text())
        except (OSError, ValueError):
            return
        self._generation = int(state.get("generation", 0))
        self._routes = {
            r["app"]: Route(app=r["app"], hostnames=list(r["hostnames"]),
                            upstreams=[(h, int(p)) for h, p in r["upstreams"]])
            for r in state.get("routes", [])
        }

    def _save_state(self) -> None:
        state = {"generation": self._generation,
                 "routes": [{"app": r.app, "hostnames": list(r.hostnames),
                             "upstreams": [list(u) for u in r.upstreams]}
                            for r in self._routes.values()]}
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, self._state_path)


def hostnames_for(settings: Settings, app: str, domains: Iterable[str]) -> list[str]:
    """An app's names: APP.<base domain> first, then its custom domains."""
    names = [settings.app_hostname(app)]
    names += [d.lower() for d in domains if d.lower() not in names]
    return names
