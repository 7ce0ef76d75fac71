"""The Docker runner: releases as run containers on this machine, behind the
router, kept at the desired count by a supervision thread (`supervision.py`).

State lives in Docker (labels on every container) and in the desired state
the controller publishes (runner.interface.IDesiredState: the current
release's spec and the app's names), so a restarted server rebuilds everything it
needs by looking: running containers of the current release are adopted, not
restarted; containers of other releases or of deleted apps are removed.

Per app, one operation at a time (deploy, scale, destroy, a repair by the
supervisor) holds the app's lock; the supervisor never waits for a lock, it
tries again on its next pass. These locks are of this process only
(core.locks.KeyedThreadLocks): they order this runner's own threads over
containers labelled with its instance, which no other process touches; the
app's state is guarded across processes by the controller's release lock,
held around every deploy, scale, restart and destroy that reaches here.

Its parts, one job each: supervision.py (keeping the desired count, apart
from deploys), hot_upgrade.py, slug_access.py (slug and key URLs, the host
slug cache), containers.py (the Docker calls) and container_spec.py (what a
run container is made of).
"""
from __future__ import annotations

import datetime as dt
import errno
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

from twisted.logger import Logger
from zope.interface import implementer

from core.locks import KeyedThreadLocks
from builder.networks import ensure_firewall, remove_app_network
from router.interface import IRouter, Route
from runner.containers import HOST_KEY_VAR, Containers, Replica, Unhealthy
from runner.slug_access import SlugAccess
from runner.errors import DeployFailed
from runner.interface import IDesiredState, IRunner, Output, ReleaseSpec, ReplicaState
from runner.serving import serving_version
from runner.oneoff import OneOffs  # issue 18: one-off containers
from runner.hot_upgrade import HotUpgradeMixin
from runner.supervision import SupervisionMixin, _quiet
from core.settings import Settings
from storage.interface import ISlugStore
from storage.local import LocalSlugStore

log = Logger()



@implementer(IRunner)
class DockerRunner(HotUpgradeMixin, SupervisionMixin):
    def __init__(self, settings: Settings, slugs: ISlugStore, router: IRouter,
                 state: IDesiredState, containers: Containers | None = None) -> None:
        self.settings = settings
        self.slugs = slugs
        # Run containers download slugs from the host's gateway listener
        # (runner/slug_access.py), from a host cache of a store elsewhere.
        self.slug_access = SlugAccess(settings, slugs, lambda: self.docker.client)
        self.local_slugs: LocalSlugStore = self.slug_access.local_slugs
        self.router = router
        self.state = state  # what should run: the controller's answer
        self._containers = containers
        self._image: str | None = None
        self._lock = KeyedThreadLocks()  # app -> this process's lock (see above)
        self._desired: dict[str, ReleaseSpec] = {}  # app -> the spec it should run
        self._live: dict[str, dict[str, Replica]] = {}  # app -> id -> healthy replica
        self._retiring: set[str] = set()  # container ids being stopped
        self._repairing: set[str] = set()  # apps a repair thread works on
        self._unadopted: set[str] = set()  # apps whose adoption is still to do
        self._unrouted: set[str] = set()  # apps whose last route change failed
        self._failures: dict[str, tuple[int, float]] = {}  # app -> (count, retry after)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # issue 18: one-off containers (release phase, `shipway run`)
        self.oneoff = OneOffs(settings, lambda: self.docker.client, self._stack_image,
                              lambda spec: self._urls(spec)[0], lambda: self.docker.host_cpus)

    # --- lazily made parts (no Docker calls at construction) ----------------------
    @property
    def docker(self) -> Containers:
        if self._containers is None:
            self._containers = Containers(self.settings)
        return self._containers

    def _stack_image(self, output: Output) -> str:
        if self._image is None:
            from builder.stack import ensure_stack_image

            self._image = ensure_stack_image(self.settings, output)
        return self._image

    def _urls(self, spec: ReleaseSpec) -> tuple[str, str]:
        return self.slug_access.urls(spec)

    # --- IRunner -----------------------------------------------------------
    def run_oneoff(self, spec: ReleaseSpec, command: str, output: Output, timeout: float,
                   kind: str = "run", detach: bool = False) -> int:
        """issue 18: runner/oneoff.py; no app lock, a one-off never touches replicas."""
        if detach:
            self.oneoff.detach(spec, command, output, timeout, kind)
            return 0
        return self.oneoff.run(spec, command, output, timeout, kind).exit_code

    def oneoffs(self, app: str) -> list[ReplicaState]:
        return self.oneoff.list(app)

    def oneoff_shell(self, spec: ReleaseSpec, timeout: float) -> str:
        return self.oneoff.start_shell(spec, self._urls(spec)[1], timeout)

    def stop_oneoff(self, app: str, container_id: str) -> bool:
        return self.oneoff.stop(app, container_id)

    def deploy(self, spec: ReleaseSpec, output: Output) -> None:
        with self._lock(spec.app):
            counts = {p: n for p, n in spec.formation.items() if n > 0}
            total = sum(counts.values())
            output(f"-----> Starting {total} replica(s) of v{spec.version}: "
                   + (", ".join(f"{p}={n}" for p, n in sorted(counts.items())) or "none"))
            new = self._start_healthy(spec, counts, output)
            old = [r for r in self.docker.list(spec.app) if r.id not in {n.id for n in new}]
            previous = (self._desired.get(spec.app), self._live.get(spec.app))
            self._desired[spec.app] = spec
            self._live[spec.app] = {r.id: r for r in new}
            try:
                self._route(spec.app)
            except Exception as exc:
                # nginx refused the switch, or took it but did not confirm
                # in time: the old release keeps serving, routed again.
                self._restore(spec.app, *previous)
                for r in new:
                    self.docker.remove(r.id)
                try:
                    self._route(spec.app)
                except Exception:  # noqa: BLE001 (supervision routes it again)
                    log.failure("runner: could not route {app} back", app=spec.app)
                raise DeployFailed(f"v{spec.version} could not be routed: {exc}") from exc
            self._failures.pop(spec.app, None)
            if any(r.is_web for r in new):
                output(f"-----> Routing {spec.app} to v{spec.version}")
            self._retire(old, output)

    def _restore(self, app: str, desired: ReleaseSpec | None,
                 live: dict[str, Replica] | None) -> None:
        if desired is None:
            self._desired.pop(app, None)
        else:
            self._desired[app] = desired
        if live is None:
            self._live.pop(app, None)
        else:
            self._live[app] = live

    def scale(self, spec: ReleaseSpec, output: Output) -> None:
        """Apply `spec.formation` to the running release: start the missing
        replicas (health-checked, then routed), route away from and then stop
        the extra ones; replicas that stay are not touched."""
        with self._lock(spec.app):
            current = self._desired.get(spec.app)
            if current is None or current.version != spec.version:
                return self.deploy(spec, output)
            live = self._live.setdefault(spec.app, {})
            by_type: dict[str, list[Replica]] = defaultdict(list)
            for r in sorted(live.values(), key=lambda r: r.created):
                by_type[r.process_type].append(r)
            missing = {p: n - len(by_type[p]) for p, n in spec.formation.items()
                       if n > len(by_type[p])}
            extra: list[Replica] = []
            for ptype, replicas in by_type.items():
                keep = spec.formation.get(ptype, 0)
                extra += replicas[keep:]
            if missing:
                output("-----> Starting " + ", ".join(f"{n} {p}" for p, n in missing.items())
                       + f" replica(s) of v{spec.version}")
                for r in self._start_healthy(spec, missing, output):
                    live[r.id] = r
            for r in extra:
                live.pop(r.id, None)
            self._desired[spec.app] = spec
            self._route(spec.app)
            self._retire(extra, output)

    def replicas(self, app: str) -> list[ReplicaState]:
        live = self._live.get(app, {})
        states = []
        for r in sorted(self.docker.list(app), key=lambda r: (r.process_type, r.created)):
            state, version = r.state, live[r.id].version if r.id in live else r.version
            if r.id in self._retiring:
                state = "stopping"
            elif r.state == "running" and r.id not in live:
                state = "starting"
            states.append(ReplicaState(
                app=app, version=version, process_type=r.process_type,
                container_id=r.id[:12], state=state, host_port=r.host_port,
                started_at=dt.datetime.fromtimestamp(r.created, dt.timezone.utc)))
        return states

    def serving_version(self, app: str) -> int | None:
        # issue 15 item 8: read from the engine and the router (runner/serving.py).
        # A replica upgraded in place runs the release its hot-version says.
        routes = getattr(self.router, "routes", None)
        return serving_version([((r.state == "running" and self._hot_version(r)) or r.version,
                                 r.state, r.stopping, r.host_port)
                                for r in self.docker.list(app)],
                               routes().get(app) if routes is not None else None)

    def ssh_endpoint(self, app: str, replica: str | None) -> tuple[str, int]:
        running = [r for r in self.docker.list(app) if r.state == "running" and r.ssh_port
                   and r.id not in self._retiring]
        if replica:
            running = [r for r in running if r.id.startswith(replica.lower())]
        else:
            running.sort(key=lambda r: (not r.is_web, r.created))
        if not running and replica:  # issue 18: a `shipway run` terminal one-off
            port = self.oneoff.ssh_port(app, replica)
            if port is not None:
                return "127.0.0.1", port
        if not running:
            which = f"replica {replica}" if replica else "replica"
            raise LookupError(f"{app} has no running {which}")
        if len(running) > 1 and replica:
            raise LookupError(f"replica {replica} of {app} is ambiguous: give more of its id")
        if not replica:  # one that can prove it is the app's, if any can
            running.sort(key=lambda r: not self._presents_app_host_key(r))
        if not self._presents_app_host_key(running[0]):
            raise LookupError(
                f"replica {running[0].id[:12]} of {app} was started before replicas carried "
                f"the app's SSH host key, which ps:ssh checks: run `shipway ps:restart -a {app}` "
                "once (zero downtime), then retry")
        return "127.0.0.1", int(running[0].ssh_port)  # type: ignore[arg-type]

    def _presents_app_host_key(self, replica: Replica) -> bool:
        """Labelled so at its start, or (a replica started before the label
        existed) found holding the app's key."""
        if replica.app_host_key:
            return True
        spec = self._desired.get(replica.app)
        key = spec.env.get(HOST_KEY_VAR) if spec else None
        held = self.docker.read_file(replica.id, "/shipway/ssh/host_ed25519_key")
        return bool(key) and held is not None and held.strip() == key.strip()

    def destroy(self, app: str) -> None:
        with self._lock(app):
            self._unadopted.discard(app)
            self._unrouted.discard(app)
            self._desired.pop(app, None)
            self._live.pop(app, None)
            self._failures.pop(app, None)
            self.router.remove_route(app)
            for r in self.docker.list(app):
                self.docker.remove(r.id)
            self.oneoff.remove_all(app)  # issue 18: its one-offs go with it
            remove_app_network(self.docker.client, self.settings, app)
            self.slug_access.forget_app(app)

    def refresh_route(self, app: str) -> None:
        with self._lock(app):
            if app in self._desired:
                self._route(app)

    def start(self) -> None:
        """Adopt this instance's containers, remove orphans, supervise. The
        supervision thread starts even if adopting some app failed: it
        tries those again on each pass."""
        self._stopping.clear()
        # Before any replica runs: the host is closed to containers but for
        # the gateway port (builder/networks.py).
        ensure_firewall(self.settings)
        # issue 18: ended one-offs a previous run of this server left (their
        # reaper died with it); running ones may be another server's.
        try:
            self.oneoff.remove_all(None, ended_only=True)
        except Exception:  # noqa: BLE001 (adoption matters more; next start retries)
            log.failure("runner: could not remove ended one-offs")
        self._adopt_all()
        self._thread = threading.Thread(target=self._supervise, name="shipway-runner",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    # --- the deploy steps -------------------------------------------------------
    def _start_healthy(self, spec: ReleaseSpec, counts: dict[str, int],
                       output: Output) -> list[Replica]:
        """Start `counts` replicas of `spec` in parallel and wait until all are
        healthy. If any is not, remove them all and raise DeployFailed."""
        jobs = [p for p, n in sorted(counts.items()) for _ in range(n)]
        if not jobs:
            return []
        image = self._stack_image(output)
        try:
            slug_url, keys_url = self._urls(spec)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            # The host slug cache is full: its temp file is gone, nothing
            # stored is touched, the old replicas serve on.
            raise DeployFailed(f"v{spec.version} could not start: the server's disk is full "
                               "(no space left for the slug cache)") from exc
        host = self.settings.app_hostname(spec.app)
        started: list[Replica] = []
        errors: list[Exception] = []
        guard = threading.Lock()

        def one(ptype: str) -> None:
            try:
                replica = self.docker.create(spec, ptype, image, slug_url, keys_url)
            except Exception as exc:  # noqa: BLE001 (reported below)
                with guard:
                    errors.append(exc)
                return
            with guard:
                started.append(replica)
            try:
                self.docker.wait_healthy(replica, spec.health, host,
                                         cancelled=lambda: bool(errors))
                where = f" on port {replica.host_port}" if replica.host_port else ""
                output(f"       {ptype} replica {replica.id[:12]} healthy{where}")
            except Unhealthy as exc:
                with guard:
                    errors.append(exc)

        with ThreadPoolExecutor(max_workers=min(len(jobs), 8)) as pool:
            list(pool.map(one, jobs))
        if errors:
            for r in started:
                self.docker.remove(r.id)
            first = next((e for e in errors if isinstance(e, Unhealthy)), errors[0])
            tail = first.log_tail if isinstance(first, Unhealthy) else []
            if not isinstance(first, Unhealthy) and "no space left on device" in str(first).lower():
                # The engine (or the host slug cache) could not write: the
                # old replicas serve on, the slug store is untouched.
                raise DeployFailed(f"v{spec.version} could not start: the server's disk is "
                                   "full (no space left on device)")
            log.warn("runner: {app} v{version} failed: {error}", app=spec.app,
                     version=spec.version, error=str(first))
            raise DeployFailed(f"v{spec.version} failed to start: {first}", log_tail=tail)
        return started

    def _route(self, app: str) -> None:
        """Point the router at the app's healthy web replicas (503 if none)."""
        hostnames = self.state.hostnames(app)  # read now: domains change between deploys
        if hostnames is None:  # the app is gone
            return
        upstreams = [("127.0.0.1", r.host_port)
                     for r in sorted(self._live.get(app, {}).values(), key=lambda r: r.created)
                     if r.is_web and r.host_port and r.id not in self._retiring]
        try:
            self.router.set_route(Route(app=app,
                                        hostnames=hostnames,
                                        upstreams=upstreams))
        except Exception:
            self._unrouted.add(app)  # supervision routes it again
            raise
        self._unrouted.discard(app)

    def _retire(self, replicas: Iterable[Replica], output: Output = _quiet) -> None:
        """Stop replicas gracefully in the background (they are unrouted)."""
        replicas = [r for r in replicas if r.id not in self._retiring]
        if not replicas:
            return
        output(f"-----> Stopping {len(replicas)} old replica(s)")
        for r in replicas:
            self._retiring.add(r.id)
            try:  # before anything else, so that no later start adopts it
                self.docker.mark_stopping(r)
            except Exception:  # noqa: BLE001 (it is stopped all the same)
                log.failure("runner: could not mark {name} as stopping", name=r.name)

        def stop(r: Replica) -> None:
            try:
                # Requests nginx's old workers still send to these replicas
                # finish first (bounded by the same grace as the stop).
                wait_drained = getattr(self.router, "wait_drained", None)
                if wait_drained is not None and not wait_drained(self.settings.stop_grace):
                    log.warn("runner: nginx still draining; stopping {name} anyway", name=r.name)
                self.docker.stop(r.id, self.settings.stop_grace)
            except Exception:  # noqa: BLE001
                log.failure("runner: stopping {name} failed", name=r.name)
            finally:
                self._retiring.discard(r.id)

        for r in replicas:
            threading.Thread(target=stop, args=(r,), name=f"stop-{r.name}", daemon=True).start()
