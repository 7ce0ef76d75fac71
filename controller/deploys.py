"""The controller's side of deploys: turns a release into a plain
`ReleaseSpec` and hands it to the runner (`Deployer`, one operation per app
at a time), and answers the runner's supervision about what should run
(`DesiredState`, the controller's implementation of runner.interface.IDesiredState).

Deploy, config change, rollback and restart all become `runner.deploy` of a
spec (fresh replicas, health-checked, then routed); a formation change
becomes `runner.scale` of the current spec (existing replicas untouched).
"""
from __future__ import annotations

import time
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from controller.errors import DeployFailed, NotFound
from controller.models import App, Release
from controller.service import Controller
from core.output import Output
from core.settings import Settings
from core.specs import HealthCheck, ReleaseSpec
from logger.store import LogStore
from router.nginx import hostnames_for
from runner.interface import IDesiredState, IRunner

log = Logger()

# Config vars an app may set to tune its own health check (Heroku gives 60 s
# to bind; a slow-booting app can ask for more).
HEALTH_PATH_VAR = "HEALTHCHECK_PATH"
HEALTH_TIMEOUT_VAR = "HEALTHCHECK_TIMEOUT"
HEALTH_ATTEMPTS_VAR = "HEALTHCHECK_ATTEMPTS"
# issue 18: the Procfile process type run once per release, before its
# replicas (Heroku's release phase), never as replicas; its time limit.
RELEASE_TYPE = "release"
RELEASE_TIMEOUT_VAR = "RELEASE_PHASE_TIMEOUT"


def release_phase_timeout(settings: Settings, env: dict[str, str]) -> int:
    """The server's limit, or the app's own (RELEASE_PHASE_TIMEOUT), 1 s to a day."""
    try:
        wanted = int(env.get(RELEASE_TIMEOUT_VAR) or settings.release_phase_timeout)
    except ValueError:
        wanted = settings.release_phase_timeout
    return max(1, min(wanted, 86400))


def health_check(settings: Settings, env: dict[str, str]) -> HealthCheck:
    """The server's defaults, overridden by the app's own config vars."""
    path = env.get(HEALTH_PATH_VAR) or settings.health_path
    if not path.startswith("/"):
        path = "/" + path
    try:
        timeout = int(env.get(HEALTH_TIMEOUT_VAR) or settings.health_timeout)
    except ValueError:
        timeout = settings.health_timeout
    try:
        attempts = int(env.get(HEALTH_ATTEMPTS_VAR) or settings.health_attempts)
    except ValueError:
        attempts = settings.health_attempts
    # A short interval: the first answer is what a push waits for.
    return HealthCheck(path=path, timeout=max(1, min(timeout, 600)), interval=0.1,
                       attempts=max(0, min(attempts, 1000)))


def release_spec(settings: Settings, controller: Controller, app: App, release: Release) -> ReleaseSpec:
    """Everything the runner needs to run `release` of `app`."""
    if release.slug_id is None:
        raise DeployFailed(f"release v{release.version} has no slug to run")
    slug = controller.get_slug(release.slug_id)
    env = controller.release_env(app, release)
    process_types = dict(release.process_types or slug.process_types)
    formation = {ptype: count for ptype, count in controller.get_formation(app).items()
                 if ptype in process_types and ptype != RELEASE_TYPE}
    # The size as stored now: `app` may have been read before a ps:scale
    # --size that came while this release was being built.
    size = controller.app_by_name(app.name).replica_size
    hostnames = hostnames_for(settings, app.name, controller.app_domains(app))
    return ReleaseSpec(app=app.name, version=release.version, slug_key=slug.storage_key,
                       process_types=process_types, env=env, formation=formation,
                       health=health_check(settings, env), slug_size=slug.size,
                       slug_unpacked_size=slug.unpacked_size, size=size,
                       hostnames=tuple(hostnames))


def current_spec(settings: Settings, controller: Controller, app: App) -> ReleaseSpec | None:
    """The spec of what is live now, None before the first deploy."""
    release = controller.current_release(app)
    if release is None or release.slug_id is None:
        return None
    return release_spec(settings, controller, app, release)


@implementer(IDesiredState)
class DesiredState:
    """What supervision reads: the controller's apps, live releases and
    domains, as names and plain specs."""

    def __init__(self, settings: Settings, controller: Controller) -> None:
        self.settings = settings
        self.controller = controller

    def app_names(self) -> set[str]:
        return {a.name for a in self.controller.all_apps()}

    def exists(self, app: str) -> bool:
        try:
            self.controller.app_by_name(app)
        except NotFound:
            return False
        return True

    def current_spec(self, app: str) -> ReleaseSpec | None:
        return current_spec(self.settings, self.controller, self.controller.app_by_name(app))

    def hostnames(self, app: str) -> list[str] | None:
        try:
            domains = self.controller.app_domains(self.controller.app_by_name(app))
        except NotFound:
            return None
        return hostnames_for(self.settings, app, domains)


class Deployer:
    """Implements controller.service.Deployer over an IRunner."""

    def __init__(self, settings: Settings, controller: Controller, runner: IRunner,
                 logs: LogStore | None = None) -> None:
        self.settings = settings
        self.controller = controller
        self.runner = runner
        self.logs = logs  # logger.store.LogStore: deploy lines join the app's logs

    def _tee(self, app: str, output: Output) -> Output:
        """`output` that also writes each line into the app's logs, as
        shipway[deploy]: whoever deploys and whoever reads the logs later
        see the same lines."""
        if self.logs is None:
            return output
        record = self.logs.writer(app, "shipway", "deploy")

        def both(line: str) -> None:
            record(line)
            output(line)

        return both

    def _lock(self, app: App) -> Any:
        """The controller's release lock of `app` (core/locks.py): the one
        lock guarding what runs, re-entrant, so the store's release path
        (which holds it already) and a direct call here are serialized alike,
        across every server on the database."""
        return self.controller.release_lock(app)

    def deploy(self, app: App, release: Release, output: Output, hot: bool = False) -> bool:
        """True when `release` went live hot (the running replicas upgraded
        in place), False for a restart deploy, also a hot push's fallback."""
        with self._lock(app):
            spec = release_spec(self.settings, self.controller, app, release)
            started = time.time()
            try:
                self.release_phase(spec, output)
                if hot:
                    return bool(self.runner.hot_upgrade(spec, self._tee(app.name, output)))
                self.runner.deploy(spec, self._tee(app.name, output))
                return False
            finally:
                # Wall-clock bounds (µs), so the deploys of several servers on
                # one database can be laid side by side from their logs.
                log.info("app {app}: deploy of v{version} ran {start:.6f} to {end:.6f}",
                         app=app.name, version=release.version, start=started,
                         end=time.time())

    def release_phase(self, spec: ReleaseSpec, output: Output) -> None:
        """issue 18: the release's `release` command in a one-off container
        of it, with its config, before any of its replicas starts. A
        non-zero exit or its timeout raises DeployFailed: the replicas of
        the last good release are never touched."""
        command = spec.process_types.get(RELEASE_TYPE)
        if not command:
            return
        timeout = release_phase_timeout(self.settings, spec.env)
        # The phase's own lines join the logs as shipway[deploy], the
        # command's as the one-off's, app[release.N] (as Heroku's).
        command_output = (self.logs.oneoff_writer(spec.app, RELEASE_TYPE, also=output)
                          if self.logs is not None else output)
        output = self._tee(spec.app, output)
        output(f"-----> Running release command of v{spec.version}: {command}")
        try:
            code = self.runner.run_oneoff(spec, command, command_output, timeout,
                                          kind=RELEASE_TYPE)
        except DeployFailed:
            raise
        except Exception as exc:  # noqa: BLE001 (Docker refused: a failed phase, said once)
            log.failure("app {app}: release command of v{version} did not start",
                        app=spec.app, version=spec.version)
            raise DeployFailed(f"release command of v{spec.version} did not start: {exc}") from exc
        if code == 124:
            raise DeployFailed(f"release command of v{spec.version} timed out after "
                               f"{timeout} s; v{spec.version} not deployed")
        if code != 0:
            raise DeployFailed(f"release command of v{spec.version} failed with exit "
                               f"status {code}; v{spec.version} not deployed")
        output("-----> Release command succeeded")

    def apply_formation(self, app: App, output: Output) -> None:
        with self._lock(app):
            spec = self._current_spec(app)
            if spec is not None:  # else the formation applies at the first deploy
                self.runner.scale(spec, self._tee(app.name, output))

    def restart(self, app: App, output: Output) -> None:
        with self._lock(app):
            spec = self._current_spec(app)
            if spec is not None:
                self.runner.deploy(spec, self._tee(app.name, output))

    def _current_spec(self, app: App) -> ReleaseSpec | None:
        """The spec of what is live now, None before the first deploy."""
        return current_spec(self.settings, self.controller, app)

    def destroy(self, app: App) -> None:
        with self._lock(app):
            self.runner.destroy(app.name)

    def refresh_route(self, app: App) -> None:
        self.runner.refresh_route(app.name)
