"""The app's build volume (its build cache, and the workspace each build's
source is unpacked into): named per instance and app, made on first need
(on a disk of SHIPWAY_BUILD_DISK where the server can make one, issue 14),
removed with every build container of the app still holding it when the
app's cache is cleared or the app destroyed.
"""
from __future__ import annotations

from typing import Any, Callable

import docker
import docker.errors
from twisted.logger import Logger

from builder import build_disk
from builder.interface import Output
from builder.standby import Standbys
from core.locks import KeyedThreadLocks
from core.settings import Settings

log = Logger()


class CacheVolumes:
    """`app_lock` is the builder's per-app lock: held while the volume is
    removed (and while a build disk is made), so a standby being made
    meanwhile waits, then finds no volume."""

    def __init__(self, settings: Settings, client: Callable[[], Any],
                 app_lock: KeyedThreadLocks, standbys: Standbys) -> None:
        self.settings = settings
        self._client = client
        self._app_lock = app_lock
        self._standbys = standbys

    def name(self, app: str) -> str:
        return f"shipway-build-{self.settings.instance}-{app}"

    def legacy_name(self, app: str) -> str:
        """The cache-only volume of Shipway before the workspace layout."""
        return f"shipway-cache-{self.settings.instance}-{app}"

    def ensure(self, app: str, clean: bool, output: Output,
               remove: Callable[[str], None]) -> str:
        """The app's volume, made if missing; first emptied (`remove`, the
        builder's, which also waits for the app's last cleanup) if `clean`."""
        name = self.name(app)
        if clean:
            output("-----> Clearing the build cache")
            remove(app)
        labels = {"shipway.instance": self.settings.instance, "shipway.app": app,
                  "shipway.role": "cache"}
        client = self._client()
        if build_disk.usable(self.settings):  # issue 14: a disk of SHIPWAY_BUILD_DISK
            with self._app_lock(app):
                build_disk.ensure_volume(client, self.settings, app, name, labels)
            return name
        try:
            client.volumes.get(name)
        except docker.errors.NotFound:
            client.volumes.create(name, labels=labels)
        return name

    def remove(self, app: str) -> None:
        """Drop the volume with the app's standby and any build container of
        the app still holding it (one a failed removal left)."""
        with self._app_lock(app):
            self._standbys.discard_app(app)
            client = self._client()
            labels = [f"shipway.instance={self.settings.instance}", "shipway.role=build",
                      f"shipway.app={app}"]
            for c in client.containers.list(all=True, filters={"label": labels}):
                try:
                    c.remove(force=True, v=True)
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError as e:  # e.g. its removal is under way
                    log.warn("builder: could not remove build container {name}: {error}",
                             name=c.name, error=str(e))
            for name in (self.name(app), self.legacy_name(app)):
                try:
                    client.volumes.get(name).remove(force=True)
                except docker.errors.NotFound:
                    pass
            build_disk.remove_disk(self.settings, app)  # issue 14
