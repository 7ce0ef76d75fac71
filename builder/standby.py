"""Standby build containers: after a build, a new container is created and
started for the app's next build and kept `build_standby_ttl` seconds,
since starting one is a good part of a warm build (0.4 s of 1.5 s). A
standby is made like any build container (only its idle `sleep` is longer)
and serves one build only: every build still runs in a container no other
build has used. Kept apart from the build itself, which only takes one.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

import attrs
import docker
import docker.errors
import requests
from twisted.logger import Logger

from core.locks import KeyedThreadLocks
from core.settings import Settings

log = Logger()


@attrs.frozen
class Standby:
    container: Any
    image: str  # the image's id
    volume: str
    created: float  # time.monotonic()


def discard(container: Any) -> None:
    """Remove a build container (gone already is fine; a failure is logged)."""
    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass
    except (docker.errors.DockerException, requests.RequestException) as e:
        log.warn("builder: could not remove build container {name}: {error}",
                 name=container.name, error=str(e))


class Standbys:
    """app -> the started container its next build may take.

    `create(app, image, volume, life)` makes a build container (the
    builder's); `app_lock` is the builder's per-app lock, held while a
    standby is made so that removing the app's cache cannot slip in between
    (the volume check and the creation)."""

    def __init__(self, settings: Settings, client: Callable[[], Any],
                 create: Callable[..., Any], app_lock: KeyedThreadLocks) -> None:
        self.settings = settings
        self._client = client
        self._create = create
        self._app_lock = app_lock
        self._standby: dict[str, Standby] = {}
        self._lock = threading.Lock()
        self._closing = False

    @property
    def closing(self) -> bool:
        return self._closing

    def start(self, app: str, image: str, volume: str) -> None:
        """Create and start the container the app's next build will take;
        it is removed unused after build_standby_ttl seconds."""
        with self._app_lock(app):
            self.start_locked(app, image, volume)

    def start_locked(self, app: str, image: str, volume: str) -> None:
        container = None
        try:
            try:
                self._client().volumes.get(volume)
            except docker.errors.NotFound:
                # The app's cache went meanwhile (destroyed): Docker would
                # make an unlabelled volume of that name for the mount.
                return
            container = self._create(app, image, volume,
                                     life=self.settings.build_standby_ttl)
            container.start()
        except (docker.errors.DockerException, requests.RequestException) as e:
            log.warn("builder: could not start a standby build container for {app}: {error}",
                     app=app, error=str(e))
            if container is not None:
                discard(container)
            return
        standby = Standby(container, container.attrs.get("Image", ""), volume, time.monotonic())
        with self._lock:
            closing = self._closing  # close() may have given up waiting for this thread
            replaced = None if closing else self._standby.get(app)
            if not closing:
                self._standby[app] = standby
        if closing:
            discard(container)
            return
        if replaced is not None:
            discard(replaced.container)
        timer = threading.Timer(self.settings.build_standby_ttl, self._expire, (app, standby))
        timer.daemon = True
        timer.start()

    def _expire(self, app: str, standby: Standby) -> None:
        with self._lock:
            if self._standby.get(app) is not standby:
                return  # taken by a build, or replaced
            del self._standby[app]
        discard(standby.container)

    def take(self, app: str, image: str, volume: str) -> Any | None:
        """The app's standby container if it is still running and was made
        for this image and volume (else it is removed): it is this build's
        and nobody else's from now on."""
        with self._lock:
            standby = self._standby.pop(app, None)
        if standby is None:
            return None
        fresh = time.monotonic() - standby.created < self.settings.build_standby_ttl
        if fresh and standby.volume == volume:
            try:
                # By image id: a tag may name another image since.
                if standby.image == self._client().images.get(image).id:
                    standby.container.reload()
                    if standby.container.status == "running":
                        return standby.container
            except (docker.errors.DockerException, requests.RequestException):
                pass
        discard(standby.container)
        return None

    def discard_app(self, app: str) -> None:
        with self._lock:
            standby = self._standby.pop(app, None)
        if standby is not None:
            discard(standby.container)

    def stop_making(self) -> None:
        """No standby is made from now on (the builder is closing)."""
        with self._lock:
            self._closing = True

    def discard_all(self) -> None:
        with self._lock:
            kept, self._standby = list(self._standby.values()), {}
        for standby in kept:
            discard(standby.container)
