"""Supervision for the Docker runner: adopt what a previous server left
running, keep each app's replicas at its formation (a dead replica is
replaced, with backoff when replacements keep failing), and remove the
containers and routes of apps that no longer exist.

A mixin of `DockerRunner` (it works on the runner's bookkeeping and locks);
kept apart so that the deploy path and the repair loop each read on their own.
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict

import attrs
from twisted.logger import Logger

from controller.errors import DeployFailed, NotFound
from runner.containers import Replica
from runner.interface import ReleaseSpec

log = Logger()

SUPERVISE_INTERVAL = 2.0  # seconds between supervision passes
ORPHAN_INTERVAL = 15.0  # seconds between checks for containers of deleted apps


def _quiet(_line: str) -> None:
    pass


class SupervisionMixin:
    def _adopt_all(self) -> None:
        from runner.deploy import release_spec

        apps = {a.name: a for a in self.controller.all_apps()}
        containers = self.docker.list()
        for name in set(self.router.routes()) - set(apps):
            self.router.remove_route(name)
        for r in containers:
            if r.app not in apps:
                log.info("runner: removing {name} (app {app} is gone)", name=r.name, app=r.app)
                self.docker.remove(r.id)
        for name, app in apps.items():
            release = self.controller.current_release(app)
            with self._lock(name):
                mine = [r for r in containers if r.app == name]
                if release is None or release.slug_id is None:
                    self._retire(mine)
                    continue
                spec = release_spec(self.settings, self.controller, app, release)
                keep: dict[str, Replica] = {}
                per_type: dict[str, int] = defaultdict(int)
                for r in sorted(mine, key=lambda r: r.created):
                    if r.version != spec.version and r.state == "running" and \
                            self._hot_version(r) == spec.version:
                        r = attrs.evolve(r, version=spec.version)  # upgraded in place
                    if (r.version == spec.version and r.state == "running"
                            and per_type[r.process_type] < spec.formation.get(r.process_type, 0)):
                        keep[r.id] = r
                        per_type[r.process_type] += 1
                self._desired[name] = spec
                self._live[name] = keep
                self._route(name)
                self._retire([r for r in mine if r.id not in keep])
                if keep:
                    log.info("runner: adopted {n} replica(s) of {app} v{v}", n=len(keep),
                             app=name, v=spec.version)

    def _hot_version(self, replica: Replica) -> int | None:
        """The release a replica was hot-upgraded to (its label keeps the
        release it started with), None if it never was."""
        said = self.docker.read_file(replica.id, "/shipway/hot-version")
        return int(said) if said and said.strip().isdigit() else None

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
        for app, spec in list(self._desired.items()):
            if app in self._repairing:
                continue
            lock = self._lock(app)
            if not lock.acquire(blocking=False):
                continue  # a deploy or scale is working on it
            try:
                # Listed under the lock: a deploy that just finished must not
                # look like replicas that vanished.
                if self._desired.get(app) is spec:
                    self._check_app(app, spec, {r.id: r for r in self.docker.list(app)})
            finally:
                lock.release()

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
        if short and time.monotonic() >= retry_at:
            self._repairing.add(app)
            threading.Thread(target=self._repair, args=(app, spec, short),
                             name=f"repair-{app}", daemon=True).start()

    def _repair(self, app: str, spec: ReleaseSpec, short: dict[str, int]) -> None:
        try:
            with self._lock(app):
                if self._desired.get(app) is not spec:
                    return  # a deploy replaced it meanwhile
                try:
                    started = self._start_healthy(spec, short, _quiet)
                except DeployFailed as exc:
                    count = self._failures.get(app, (0, 0.0))[0] + 1
                    self._failures[app] = (count, time.monotonic() + min(60.0, 2.0 ** count))
                    log.warn("runner: could not replace {app} replicas: {error}",
                             app=app, error=exc.message)
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
        names = {a.name for a in self.controller.all_apps()}
        for r in containers:
            if r.app in names or r.id in self._retiring:
                continue
            with self._lock(r.app):
                try:
                    self.controller.app_by_name(r.app)
                    continue
                except NotFound:
                    pass
                log.info("runner: removing {name} (app {app} is gone)", name=r.name, app=r.app)
                self._desired.pop(r.app, None)
                self._live.pop(r.app, None)
                self.docker.remove(r.id)
        for app in set(self.router.routes()) - names:
            with self._lock(app):
                try:
                    self.controller.app_by_name(app)
                except NotFound:
                    self.router.remove_route(app)
