"""Supervision for the Docker runner: adopt what a previous server left
running, keep each app's replicas at its formation (a dead replica is
replaced, with backoff when replacements keep failing), and remove the
containers and routes of apps that no longer exist.

A mixin of `DockerRunner` (it works on the runner's bookkeeping and locks);
kept apart so that the deploy path and the repair loop each read on their own.
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict
from typing import Iterator

import attrs
from twisted.logger import Logger

from builder.networks import app_networks, remove_app_network
from core.errors import NotFound
from core.output import quiet as _quiet
from runner.containers import Replica
from runner.errors import DeployFailed
from runner.interface import ReleaseSpec

log = Logger()

SUPERVISE_INTERVAL = 2.0  # seconds between supervision passes
ADOPT_EVERYTHING = ""  # in _unadopted: the first sweep itself failed
ORPHAN_INTERVAL = 15.0  # seconds between checks for containers of deleted apps


class SupervisionMixin:
    @contextlib.contextmanager
    def _lock_if_free(self, app: str) -> Iterator[bool]:
        """The app's lock if nobody holds it (then True): supervision never
        waits for a deploy, it tries again on its next pass."""
        lock = self._lock(app)
        got = lock.acquire(blocking=False)
        try:
            yield got
        finally:
            if got:
                lock.release()

    def _adopt_all(self) -> None:
        """Adopt what a previous server left running, app by app; an app
        that cannot be adopted now (the engine or the router failing, a
        deploy holding its lock) does not stop the others, and supervision
        tries it again. Containers and routes of apps that
        are gone are left to the orphan sweep, which checks each under its
        app's lock."""
        try:
            apps = sorted(self.state.app_names())
            self._remove_orphans()
        except Exception:  # noqa: BLE001
            log.failure("runner: adopting failed; supervision will try again")
            self._unadopted.add(ADOPT_EVERYTHING)
            return
        self._unadopted.discard(ADOPT_EVERYTHING)
        for name in apps:
            self._unadopted.add(name)
            self._adopt_one(name)

    def _adopt_one(self, name: str) -> None:
        """Under the app's lock, with its release and containers read there:
        a deploy that came first (the API is open while this runs) has set
        what runs, and is not undone. It never waits for the lock: a deploy
        holding it would stall the boot or a supervision pass."""
        try:
            with self._lock_if_free(name) as got:
                if not got:
                    return  # a later pass
                if name in self._desired:
                    self._unadopted.discard(name)
                    return
                found = self.state.current_spec(name)  # NotFound: the app is gone
                mine = self.docker.list(name)
                if found is None:
                    self._retire(mine)
                    self._unadopted.discard(name)
                    return
                spec = found
                keep: dict[str, Replica] = {}
                per_type: dict[str, int] = defaultdict(int)
                # Replicas of the stored size first (a resize cut off by a
                # crash may have started some), then the oldest.
                for r in sorted(mine, key=lambda r: (not r.sized(spec.size), r.created)):
                    if r.state != "running" or r.stopping:
                        continue
                    hot = self._hot_version(r)
                    if hot is not None and hot != r.version:
                        # Upgraded in place: it runs that release's code
                        # (one whose upgrade failed is not the current one).
                        r = attrs.evolve(r, version=hot)
                    if r.version == spec.version and \
                            per_type[r.process_type] < spec.formation.get(r.process_type, 0):
                        keep[r.id] = r
                        per_type[r.process_type] += 1
                self._desired[name] = spec
                self._live[name] = keep
                self._unadopted.discard(name)
                self._retire([r for r in mine if r.id not in keep])
                if keep:
                    log.info("runner: adopted {n} replica(s) of {app} v{v}", n=len(keep),
                             app=name, v=spec.version)
                self._route(name)  # if it fails, _unrouted has it for the next pass
        except NotFound:
            self._unadopted.discard(name)  # deleted meanwhile: the orphan sweep's
        except Exception:  # noqa: BLE001
            log.failure("runner: adopting {app} failed; supervision will try again", app=name)

    def _redeploy(self, app: str, spec: ReleaseSpec) -> None:
        """Replace the app's replicas through the deploy path (zero
        downtime): those of another size than the stored one, which a
        resize cut off by a crash leaves. Retried, backing off, on failure."""
        try:
            with self._lock(app):
                if self._desired.get(app) is spec:
                    log.info("runner: replacing {app}'s replicas with ones of its size", app=app)
                    self.deploy(spec, _quiet)
        except Exception:  # noqa: BLE001
            self._back_off(app)
            log.failure("runner: replacing {app}'s replicas failed", app=app)
        finally:
            self._repairing.discard(app)

    def _hot_version(self, replica: Replica) -> int | None:
        """The release a replica was hot-upgraded to (its label keeps the
        release it started with), None if it never was."""
        said = self.docker.read_file(replica.id, "/shipway/hot-version")
        said = (said or "").strip()
        return int(said) if said.isascii() and said.isdigit() else None

    def _supervise(self) -> None:
        last_orphans = time.monotonic()
        while not self._stopping.wait(SUPERVISE_INTERVAL):
            try:
                self._supervise_once()
                if time.monotonic() - last_orphans > ORPHAN_INTERVAL:
                    last_orphans = time.monotonic()
                    self._remove_orphans()
            except Exception:  # noqa: BLE001 (the loop must survive)
                log.failure("runner: supervision pass failed")

    def _supervise_once(self) -> None:
        ensure_running = getattr(self.router, "ensure_running", None)
        if ensure_running is not None:
            try:
                ensure_running()  # nginx died: started again with its routes
            except Exception:  # noqa: BLE001 (the replicas are still watched)
                log.failure("runner: the router is down and could not be started")
        if ADOPT_EVERYTHING in self._unadopted:
            self._adopt_all()
        for app in list(self._unadopted - {ADOPT_EVERYTHING}):
            self._adopt_one(app)
        for app in list(self._unrouted):
            self._route_again(app)
        for app, spec in list(self._desired.items()):
            if app in self._repairing:
                continue
            with self._lock_if_free(app) as got:  # else a deploy or scale works on it
                # Listed under the lock: a deploy that just finished must not
                # look like replicas that vanished.
                if got and self._desired.get(app) is spec:
                    self._check_app(app, spec, {r.id: r for r in self.docker.list(app)})

    def _route_again(self, app: str) -> None:
        """Route an app whose last route change failed (nginx hung or was
        down) to the replicas it has now."""
        try:
            with self._lock_if_free(app) as got:  # else a deploy on it routes it anyway
                if got and app in self._desired:
                    self._route(app)
                elif got:
                    self._unrouted.discard(app)
        except Exception:  # noqa: BLE001 (tried again next pass)
            log.failure("runner: routing {app} failed again", app=app)

    def _check_app(self, app: str, spec: ReleaseSpec, seen: dict[str, Replica]) -> None:
        """Drop dead replicas, retire strays, start a repair if short."""
        live = self._live.setdefault(app, {})
        dead = [r for rid, r in live.items()
                if rid not in seen or seen[rid].state not in ("running", "restarting")]
        for r in dead:
            tail = self.docker.log_tail(r.id, 10)
            log.warn("runner: {app} replica {name} died; replacing it. Last lines: {tail}",
                     app=app, name=r.name, tail=" | ".join(tail))
            del live[r.id]
        if dead:
            self._route(app)
            for r in dead:
                self.docker.remove(r.id)
        strays = [r for rid, r in seen.items() if rid not in live and rid not in self._retiring]
        self._retire(strays)
        short = {p: n - sum(1 for r in live.values() if r.process_type == p)
                 for p, n in spec.formation.items()}
        short = {p: n for p, n in short.items() if n > 0}
        count, retry_at = self._failures.get(app, (0, 0.0))
        if time.monotonic() < retry_at:
            return
        if short:
            self._repairing.add(app)
            threading.Thread(target=self._repair, args=(app, spec, short),
                             name=f"repair-{app}", daemon=True).start()
        elif any(not r.sized(spec.size) for r in live.values()):
            # A resize cut off by a crash: they serve until replicas of the
            # stored size are healthy, as in any deploy.
            self._repairing.add(app)
            threading.Thread(target=self._redeploy, args=(app, spec),
                             name=f"resize-{app}", daemon=True).start()

    def _back_off(self, app: str) -> None:
        """The next repair of `app` waits 2, 4, ... 60 s: replacements that
        keep failing must not start a container every pass."""
        count = self._failures.get(app, (0, 0.0))[0] + 1
        self._failures[app] = (count, time.monotonic() + min(60.0, 2.0 ** count))

    def _repair(self, app: str, spec: ReleaseSpec, short: dict[str, int]) -> None:
        try:
            with self._lock(app):
                if self._desired.get(app) is not spec:
                    return  # a deploy replaced it meanwhile
                try:
                    started = self._start_healthy(spec, short, _quiet)
                except Exception as exc:  # noqa: BLE001 (unhealthy, engine, slug store)
                    self._back_off(app)
                    log.warn("runner: could not replace {app} replicas: {error}", app=app,
                             error=exc.message if isinstance(exc, DeployFailed) else repr(exc))
                    return
                self._failures.pop(app, None)
                live = self._live.setdefault(app, {})
                for r in started:
                    live[r.id] = r
                self._route(app)
                log.info("runner: started {n} replacement replica(s) for {app}",
                         n=len(started), app=app)
        except Exception:  # noqa: BLE001
            log.failure("runner: repair of {app} failed", app=app)
        finally:
            self._repairing.discard(app)

    def _remove_orphans(self) -> None:
        # Containers first, then apps: a container listed here belongs to an
        # app created before the app list was read, so it cannot be mistaken.
        containers = self.docker.list()
        names = self.state.app_names()
        for r in containers:
            if r.app in names or r.id in self._retiring:
                continue
            with self._lock(r.app):
                if self.state.exists(r.app):
                    continue
                log.info("runner: removing {name} (app {app} is gone)", name=r.name, app=r.app)
                self._desired.pop(r.app, None)
                self._live.pop(r.app, None)
                self.docker.remove(r.id)
        self._remove_unused_networks()
        for app in set(self.router.routes()) - names:
            with self._lock(app):
                if not self.state.exists(app):
                    self.router.remove_route(app)

    def _remove_unused_networks(self) -> None:
        """Remove the network of each app that has no container left (a
        destroyed app, or one scaled to nothing), under the app's lock so
        that no deploy is between creating a replica and starting it."""
        for app in app_networks(self.docker.client, self.settings):
            with self._lock_if_free(app) as got:
                if got and not self.docker.list(app):
                    remove_app_network(self.docker.client, self.settings, app)
