"""The in-memory runner: a real IRunner without Docker, for the fast tests
of the controller, the pipeline and the API. Replicas are records, not
processes; otherwise it keeps the Docker runner's contract: a deploy starts
the formation's replicas of the new release, routes to them, then retires
the old ones, and leaves the old ones serving when the new ones fail; scale
keeps the replicas that stay; `start` adopts what runs like a restarted
server does (replicas of the current release stay, the others go); the
same progress lines go to the output.

Health is real in one way: a slug the store no longer holds (or never
held) cannot start, as a Docker replica could not download it. Other
failures are injected faults (`fail_next`), named for what a test breaks.
"""
from __future__ import annotations

import datetime as dt
import itertools
import threading
from collections import defaultdict

import attrs
from zope.interface import implementer

from core.errors import NotFound
from core.output import Output
from core.specs import ReleaseSpec, ReplicaState
from router.interface import IRouter, Route
from runner.errors import DeployFailed
from runner.interface import IDesiredState, IRunner
from runner.serving import serving_version
from storage.interface import ISlugStore

FIRST_PORT = 20000  # ports the records claim (nothing listens on them)


class Crashed(BaseException):
    """An injected kill of the server mid-deploy (not an error any layer
    handles: like SIGKILL, nothing after it runs)."""


@attrs.frozen
class MemoryReplica:
    id: str
    app: str
    version: int
    process_type: str
    host_port: int | None
    started_at: dt.datetime
    stopping: bool = False


@implementer(IRunner)
class MemoryRunner:
    def __init__(self, state: IDesiredState | None = None, slugs: ISlugStore | None = None,
                 router: IRouter | None = None) -> None:
        self.state, self.slugs, self.router = state, slugs, router
        self.routes: dict[str, Route] = {}  # what the router was told, per app
        self.events: list[tuple[str, str, int]] = []  # (event, app, version)
        self._replicas: dict[str, dict[str, MemoryReplica]] = defaultdict(dict)
        self._desired: dict[str, ReleaseSpec] = {}
        self._fail: dict[str, str] = {}  # app -> reason its next start fails
        self._crash: dict[str, str] = {}  # app -> the deploy step it dies at
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self.started = False
        # issue 18: one-offs run (app, kind, version, command), and injected
        # outcomes: app -> (exit status, lines printed, hangs past its timeout)
        self.oneoff_runs: list[tuple[str, str, int, str]] = []
        self._oneoff_outcome: dict[str, tuple[int, list[str], bool]] = {}

    # --- injected faults ----------------------------------------------------
    def fail_next(self, app: str, reason: str = "the replica exited during boot") -> None:
        """The app's next replica start fails health with `reason`."""
        self._fail[app] = reason

    def crash_at(self, app: str, step: str) -> None:
        """The app's next deploy stops dead (as a killed server would) once
        its new replicas run ("started": not routed yet) or once they are
        routed ("routed": the old ones not yet stopped), raising Crashed."""
        self._crash[app] = step

    def _crash_if(self, app: str, step: str) -> None:
        if self._crash.get(app) == step:
            del self._crash[app]
            raise Crashed(f"{app}: stopped dead at {step!r}")

    def oneoff_outcome(self, app: str, exit_code: int = 0, lines: list[str] | None = None,
                       hangs: bool = False) -> None:
        """The app's one-offs from now on exit with `exit_code` after printing
        `lines`, or (`hangs`) never end and are stopped at their timeout."""
        self._oneoff_outcome[app] = (exit_code, list(lines or []), hangs)

    # --- IRunner --------------------------------------------------------------
    def run_oneoff(self, spec: ReleaseSpec, command: str, output: Output, timeout: float,
                   kind: str = "run", detach: bool = False) -> int:
        """A record, as the replicas are: the injected outcome (default: exit
        0, nothing printed); a hanging one is stopped at once, as its timeout."""
        with self._lock:
            self.oneoff_runs.append((spec.app, kind, spec.version, command))
            self.events.append((f"oneoff:{kind}", spec.app, spec.version))
            code, lines, hangs = self._oneoff_outcome.get(spec.app, (0, [], False))
        for line in lines:
            output(line)
        if hangs:
            output(f"-----> {kind} command timed out after {timeout:g} s and was stopped")
            return 124
        return 0 if detach else code

    def oneoffs(self, app: str) -> list[ReplicaState]:
        return []  # a record's one-off has ended by the time run_oneoff returns

    def oneoff_shell(self, spec: ReleaseSpec, timeout: float) -> str:
        raise LookupError(f"{spec.app}'s one-offs run in memory: they have no terminal")

    def stop_oneoff(self, app: str, container_id: str) -> bool:
        return False

    def deploy(self, spec: ReleaseSpec, output: Output) -> None:
        with self._lock:
            old = list(self._replicas[spec.app].values())
            counts = {p: n for p, n in spec.formation.items() if n > 0}
            output(f"-----> Starting {self._describe(counts)} replica(s) of v{spec.version}")
            new = self._start_healthy(spec, counts, output)
            for r in new:
                self._replicas[spec.app][r.id] = r
            self._crash_if(spec.app, "started")
            self._desired[spec.app] = spec
            for r in old:  # routed away from, then stopped
                self._replicas[spec.app][r.id] = attrs.evolve(r, stopping=True)
            self._route(spec.app)
            self._crash_if(spec.app, "routed")
            for r in old:
                self._replicas[spec.app].pop(r.id, None)
            self._retire(old, output)
            self.events.append(("deployed", spec.app, spec.version))

    def hot_upgrade(self, spec: ReleaseSpec, output: Output) -> bool:
        """In place when only the code changed, else a restart, as the
        Docker runner decides (the in-place step itself cannot fail here)."""
        with self._lock:
            current, live = self._desired.get(spec.app), self._live(spec.app)
            same = current is not None and live and current.process_types == spec.process_types \
                and current.size == spec.size and _env(current) == _env(spec)
            if not same:
                output("-----> Hot upgrade not possible: restarting instead")
                self.deploy(spec, output)
                return False
            for r in live:
                self._replicas[spec.app][r.id] = attrs.evolve(r, version=spec.version)
            self._desired[spec.app] = spec
            self.events.append(("hot-upgraded", spec.app, spec.version))
            output(f"-----> {spec.app} hot-upgraded to v{spec.version} "
                   f"({len(live)} replica(s), none restarted)")
            return True

    def scale(self, spec: ReleaseSpec, output: Output) -> None:
        with self._lock:
            current = self._desired.get(spec.app)
            if current is None or current.version != spec.version:
                return self.deploy(spec, output)
            by_type: dict[str, list[MemoryReplica]] = defaultdict(list)
            for r in sorted(self._live(spec.app), key=lambda r: r.started_at):
                by_type[r.process_type].append(r)
            missing = {p: n - len(by_type[p]) for p, n in spec.formation.items()
                       if n > len(by_type[p])}
            extra = [r for p, rs in by_type.items() for r in rs[spec.formation.get(p, 0):]]
            if missing:
                output(f"-----> Starting {self._describe(missing)} replica(s) of v{spec.version}")
                for r in self._start_healthy(spec, missing, output):
                    self._replicas[spec.app][r.id] = r
            self._desired[spec.app] = spec
            for r in extra:  # unrouted first, then stopped
                self._replicas[spec.app].pop(r.id, None)
            self._route(spec.app)
            self._retire(extra, output)
            self.events.append(("scaled", spec.app, spec.version))

    def refresh_route(self, app: str) -> None:
        with self._lock:
            if app in self._desired:
                self._route(app)

    def replicas(self, app: str) -> list[ReplicaState]:
        with self._lock:
            return [ReplicaState(app=app, version=r.version, process_type=r.process_type,
                                 container_id=r.id, state="stopping" if r.stopping else "running",
                                 host_port=r.host_port, started_at=r.started_at)
                    for r in sorted(self._replicas.get(app, {}).values(),
                                    key=lambda r: (r.process_type, r.started_at, r.id))]

    def serving_version(self, app: str) -> int | None:
        with self._lock:
            return serving_version([(r.version, "running", r.stopping, r.host_port)
                                    for r in self._replicas.get(app, {}).values()],
                                   self.routes.get(app))

    def ssh_endpoint(self, app: str, replica: str | None) -> tuple[str, int]:
        raise LookupError(f"{app}'s replicas run in memory: they have no SSH server")

    def destroy(self, app: str) -> None:
        with self._lock:
            self._replicas.pop(app, None)
            self._desired.pop(app, None)
            self.routes.pop(app, None)
            if self.router is not None:
                self.router.remove_route(app)
            self.events.append(("destroyed", app, 0))

    def start(self) -> None:
        """Adopt what runs, as a restarted server does: the replicas of the
        controller's current release stay (up to its formation), the others
        are removed, and the route points at the ones kept."""
        with self._lock:
            self.started = True
            if self.state is None:
                return
            for app in list(self._replicas):
                try:
                    spec = self.state.current_spec(app)
                except NotFound:
                    self._replicas.pop(app, None)
                    self.routes.pop(app, None)
                    continue
                keep: dict[str, MemoryReplica] = {}
                per_type: dict[str, int] = defaultdict(int)
                for r in sorted(self._replicas[app].values(), key=lambda r: r.started_at):
                    if spec is not None and not r.stopping and r.version == spec.version \
                            and per_type[r.process_type] < spec.formation.get(r.process_type, 0):
                        keep[r.id] = r
                        per_type[r.process_type] += 1
                self._replicas[app] = keep
                if spec is None:
                    self._desired.pop(app, None)
                else:
                    self._desired[app] = spec
                self._route(app)
                self.events.append(("adopted", app, spec.version if spec else 0))

    def stop(self) -> None:
        self.started = False

    # --- the steps ------------------------------------------------------------------
    @staticmethod
    def _describe(counts: dict[str, int]) -> str:
        return ", ".join(f"{n} {p}" for p, n in sorted(counts.items())) or "0"

    def _live(self, app: str) -> list[MemoryReplica]:
        return [r for r in self._replicas.get(app, {}).values() if not r.stopping]

    def _start_healthy(self, spec: ReleaseSpec, counts: dict[str, int],
                       output: Output) -> list[MemoryReplica]:
        if self.slugs is not None and not self.slugs.exists(spec.slug_key):
            raise DeployFailed(f"v{spec.version} failed to start: its slug is not in the store")
        reason = self._fail.pop(spec.app, None)
        if reason is not None:
            self.events.append(("failed", spec.app, spec.version))
            raise DeployFailed(f"v{spec.version} failed to start: {reason}", log_tail=[reason])
        started = []
        now = dt.datetime.now(dt.timezone.utc)
        for ptype, n in sorted(counts.items()):
            for _ in range(n):
                number = next(self._ids)
                r = MemoryReplica(id=f"m{number:011d}", app=spec.app, version=spec.version,
                                  process_type=ptype, started_at=now,
                                  host_port=FIRST_PORT + number if ptype == "web" else None)
                started.append(r)
                where = f" on port {r.host_port}" if r.host_port else ""
                output(f"       {ptype} replica {r.id} healthy{where}")
        return started

    def _route(self, app: str) -> None:
        hostnames = self.state.hostnames(app) if self.state is not None else None
        spec = self._desired.get(app)
        if hostnames is None:
            hostnames = list(spec.hostnames) if spec is not None else [app]
        route = Route(app=app, hostnames=list(hostnames),
                      upstreams=[("127.0.0.1", r.host_port) for r in
                                 sorted(self._live(app), key=lambda r: r.started_at)
                                 if r.host_port])
        self.routes[app] = route
        if self.router is not None:
            self.router.set_route(route)

    def _retire(self, replicas: list[MemoryReplica], output: Output) -> None:
        """Replicas already unrouted and forgotten: stopping is instant here."""
        if replicas:
            output(f"-----> Stopping {len(replicas)} old replica(s)")


def _env(spec: ReleaseSpec) -> dict[str, str]:
    return {k: v for k, v in spec.env.items() if k != "APP_VERSION"}
