"""Builds a pushed commit into a slug inside one new, isolated Docker
container from the stack image, running Heroku-API buildpacks.

Layout in the build container: BUILD_DIR=/app (so virtualenvs and releases
are built at the path they run from) and CACHE_DIR=/cache, both symlinks of
the stack image into /workspace, where the app's own build volume is
mounted: the cache is kept there between builds and the source is unpacked
there for each one, so that a buildpack can hard-link or move a cached
result into the slug instead of writing it again. ENV_DIR=/shipway/env (one
0600 file per config var, only ever inside the container), buildpacks under
/shipway/buildpacks. Everything gets in through one `put_archive` of a tar
made on the host; nothing of the host is mounted. The buildpacks run in one
`docker exec` of files/run_buildpacks.sh as the `app` user (each exec costs
Docker round trips), which streams every output line to the pusher on the
exec's stderr, says what the builder must know on marked lines there, and
writes the slug to its stdout.
A timer kills the container at the deadline. The container and the build's
source are removed in the background once the slug is stored (a killed
server's leftovers at its next start), so the push goes on to deploy
meanwhile; then a new container is created and started for the app's next
build (a *standby*, kept `build_standby_ttl` seconds), since starting one
is a good part of a warm build here (0.4 s of 1.5 s). A standby is made
like any build container (only its idle `sleep` is longer) and serves one
build only: every build still runs in a container no other build has used.

Its parts, one job each: driver_events.py (what the driver says),
standby.py (standby containers), cache_volumes.py (the app's build volume).
"""
from __future__ import annotations

import io
import shutil
import tarfile
import threading
import time
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests
from twisted.logger import Logger
from zope.interface import implementer

from builder.buildpacks import DETECT_ORDER, Buildpack, add_to_tar, bundled, parse_buildpacks_file, resolve
from builder.interface import BuildRequest, BuildResult, IBuilder, Output
from builder.remote_git import FetchPolicy, fetch_home
from builder.networks import build_memory_bytes, build_tmp_bytes, ensure_build_network
from builder.slug import SlugWriter, excludes_file, parse_slugignore
from builder.source import export_source, new_work_dir, read_top_file
from builder.stack import APP_UID, ensure_stack_image
from builder.errors import BuildFailed
from builder.standby import Standbys
from builder.cache_volumes import CacheVolumes
from builder.driver_events import (  # noqa: F401 (re-exported: builder.memory, tests)
    DriverEvents, LineStream, _DriverEvents, disk_full_message, parse_procfile)
from core.locks import KeyedThreadLocks
from core.settings import Settings

BUILD_DIR, CACHE_DIR, ENV_DIR = "/app", "/cache", "/shipway/env"
WORKSPACE = "/workspace"  # the app's build volume; /app and /cache point into it
# From builder/files, root-owned in the container: the build cannot change them.
DRIVER, REMOVE_TREE = "/shipway/run_buildpacks.sh", "/shipway/remove_tree.sh"
SLUG_EXCLUDES = "/shipway/slug-excludes"  # read by the driver
# Run after a build: its source tree goes (under a name of that build's
# own, so a removal that runs late never reaches the next build's), the
# cache stays.
EMPTY_WORKSPACE_SCRIPT = f'[ -e app ] || exit 0; mv -T -- app "$1" && bash {REMOVE_TREE} "$1"'
log = Logger()


def _read_file(repo_path: Path, commit: str, name: bytes) -> str | None:
    """A top-level file of the commit, or None (for .buildpacks, .slugignore);
    a huge one fails the build before it is read (builder/source.py)."""
    return read_top_file(repo_path, commit, name.decode())


@implementer(IBuilder)
class DockerBuilder:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.temp_base = settings.data_dir / "tmp" / "builds"
        self._client: docker.DockerClient | None = None
        # app -> the thread removing its last build container: the next build
        # of that app waits for it, as they share the app's build volume.
        self._cleanups: dict[str, threading.Thread] = {}
        # app -> held while its standby is made or its cache removed, so that
        # neither can slip in between the other's steps. Of this process
        # only (core.locks.KeyedThreadLocks): the standby and the volume are
        # named for this server's instance, which no other process builds.
        self._app_lock = KeyedThreadLocks()
        # app -> the started container its next build may take.
        self.standbys = Standbys(settings, lambda: self.client, self._create, self._app_lock)
        self.caches = CacheVolumes(settings, lambda: self.client, self._app_lock, self.standbys)

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            # Long enough for a silent compile step: the build's own timer,
            # not an HTTP read timeout, is what ends a stuck build.
            self._client = docker.from_env(timeout=self.settings.build_timeout + 120)
        return self._client

    def build_volume_name(self, app: str) -> str:
        return self.caches.name(app)

    def wait_for_cleanup(self, app: str | None = None, timeout: float | None = None) -> None:
        """Block until the background removal of `app`'s (or every app's)
        last build container, and the start of its standby, are done.
        Builds wait with no timeout, as the next build shares the volume;
        each Docker call of the removal is bounded by the client's own
        timeout. A server shutting down passes one."""
        for name, thread in list(self._cleanups.items()):
            if app is None or name == app:
                thread.join(timeout)
                if not thread.is_alive() and self._cleanups.get(name) is thread:
                    self._cleanups.pop(name, None)  # another waiter may have been first

    # --- IBuilder ------------------------------------------------------------------

    def build(self, request: BuildRequest, output: Output) -> BuildResult:
        self.wait_for_cleanup(request.app)
        work = new_work_dir(self.temp_base)
        slug_path = self.temp_base / f"slug-{work.name}.tar.gz"
        incoming = f"incoming-{uuid.uuid4().hex[:12]}"
        container = None
        timer: threading.Timer | None = None
        timed_out = threading.Event()
        try:
            image = ensure_stack_image(self.settings, output)
            packs, detect_mode, source = self._prepare(request, work, incoming, output)
            volume = self.caches.ensure(request.app, request.clean_cache, output,
                                        self.remove_cache)
            container = self.standbys.take(request.app, image, volume)
            started = container is not None
            if container is None:
                container = self._create(request.app, image, volume)
            with open(work / "input.tar", "rb") as archive:
                container.put_archive("/", archive)
            # The source streams from git into the container: bounded memory,
            # nothing of it on the host's disk (builder/source.py).
            container.put_archive("/", source.stream())
            if not started:
                container.start()

            def expire() -> None:
                timed_out.set()
                try:
                    container.kill()
                except docker.errors.APIError:
                    pass

            timer = threading.Timer(self.settings.build_timeout, expire)
            timer.daemon = True
            timer.start()
            with SlugWriter(slug_path, self.settings.max_slug_bytes) as slug:
                chosen, process_types = self._run_driver(container, request, packs,
                                                         detect_mode, incoming, output,
                                                         timed_out, slug)
            sha, size = slug.sha256, slug.size
            output(f"-----> Slug {size / 1024 / 1024:.1f} MB, sha256 {sha[:12]}")
            log.info("build of {app} at {commit}: slug {sha} ({size} bytes) by {packs}",
                     app=request.app, commit=request.commit, sha=sha, size=size, packs=chosen)
            return BuildResult(slug_path=slug_path, sha256=sha, size=size,
                               process_types=process_types, buildpacks=chosen,
                               unpacked_size=slug.unpacked_size)
        except BuildFailed as failed:
            log.info("build of {app} at {commit} failed: {reason}", app=request.app,
                     commit=request.commit, reason=failed.reason)
            slug_path.unlink(missing_ok=True)
            if timed_out.is_set():
                raise self._timeout_error() from None
            raise
        except Exception as e:  # Docker, I/O: still a failed build, with a reason
            slug_path.unlink(missing_ok=True)
            if timed_out.is_set():
                raise self._timeout_error() from None
            if "no space left on device" in str(e).lower():  # issue 14
                raise BuildFailed(disk_full_message(self.settings.build_disk),
                                  reason="build disk full") from e
            raise BuildFailed(f"build error: {e}", reason="build failed") from e
        finally:
            if timer is not None:
                timer.cancel()
            if container is not None:
                self._remove_in_background(request.app, container, image, volume)
            shutil.rmtree(work, ignore_errors=True)

    def close(self, timeout: float | None = None) -> None:
        self.standbys.stop_making()
        self.wait_for_cleanup(timeout=timeout)
        self.standbys.discard_all()

    def _remove_in_background(self, app: str, container: Any, image: str,
                              volume: str) -> None:
        """Empty /workspace/app (the cache stays) and remove the container,
        then start the app's standby, off the push's path; a server killed
        meanwhile leaves labelled containers that `cleanup_leftovers`
        removes at its next start, and a source dir that the next build's
        first step removes. The tree is first renamed to a name only this
        build uses, so a removal that ran late could never reach the next
        build's source."""
        trash = f"trash-{uuid.uuid4().hex[:12]}"

        def run() -> None:
            try:
                self._exec(container, ["bash", "-c", EMPTY_WORKSPACE_SCRIPT, "empty", trash],
                           workdir=WORKSPACE)
            except (docker.errors.DockerException, requests.RequestException):
                pass  # stopped (timeout, kill): the next build empties it
            try:
                container.remove(force=True, v=True)
            except (docker.errors.DockerException, requests.RequestException) as e:
                log.warn("builder: could not remove build container {name}: {error}",
                         name=container.name, error=str(e))
            if self.settings.build_standby_ttl > 0 and not self.standbys.closing:
                self._start_standby(app, image, volume)

        thread = threading.Thread(target=run, name=f"build-cleanup-{app}", daemon=True)
        self._cleanups[app] = thread
        thread.start()

    # --- standby containers (builder/standby.py) ---------------------------------------

    def _start_standby(self, app: str, image: str, volume: str) -> None:
        self.standbys.start(app, image, volume)

    # --- cache -------------------------------------------------------------------------

    def remove_cache(self, app: str) -> None:
        """Drop the app's build volume (builder/cache_volumes.py), once the
        removal of its last build container is done."""
        self.wait_for_cleanup(app)
        self.caches.remove(app)

    def cleanup_leftovers(self) -> None:
        """Build containers of this instance and the temp dir a killed server
        left behind (no build can be running when this is called at start)."""
        labels = [f"shipway.instance={self.settings.instance}", "shipway.role=build"]
        try:
            leftovers = self.client.containers.list(all=True, filters={"label": labels})
        except docker.errors.DockerException as e:  # no engine: nothing to clean, say why
            log.warn("builder: cannot list leftover build containers: {error}", error=str(e))
            leftovers = []
        for c in leftovers:
            log.info("builder: removing leftover build container {name}", name=c.name)
            try:
                c.remove(force=True, v=True)
            except docker.errors.APIError:
                pass
        if self.temp_base.is_dir():
            for path in self.temp_base.iterdir():
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)

    # --- steps ---------------------------------------------------------------------

    def _prepare(self, request: BuildRequest, work: Path, incoming: str,
                 output: Output) -> tuple[list[Buildpack], bool, Any]:
        """Write the input tar (buildpacks, the driver, ENV_DIR); check the
        source against the limits and return its exporter, streamed later."""
        output(f"-----> Fetching source {request.commit[:12]}")
        buildpacks_file = _read_file(request.repo_path, request.commit, b".buildpacks")
        slugignore = parse_slugignore(
            _read_file(request.repo_path, request.commit, b".slugignore") or "")
        # issue 14: the rules of this build's fetches (buildpacks, submodules).
        fetch_home(work, FetchPolicy.for_build(self.settings.fetch_allow,
                                               self.settings.fetch_connect_timeout,
                                               self.settings.fetch_timeout))
        limits = self.settings.limits
        source = export_source(request.repo_path, request.commit, work, output, uid=APP_UID,
                               prefix=f"{WORKSPACE.lstrip('/')}/{incoming}",
                               max_blob_bytes=limits.blob_bytes,
                               max_tree_bytes=limits.source_tree_bytes)
        with tarfile.open(work / "input.tar", "w", format=tarfile.PAX_FORMAT) as tar:
            if buildpacks_file is not None:
                packs = resolve(parse_buildpacks_file(buildpacks_file), work)
                if not packs:
                    raise BuildFailed(".buildpacks lists no buildpack", reason="bad .buildpacks")
            else:
                packs = [bundled(name) for name in DETECT_ORDER]
            add_to_tar(tar, packs)
            files = resources.files("builder").joinpath("files")
            for path, data in ((DRIVER, files.joinpath("run_buildpacks.sh").read_bytes()),
                               (REMOVE_TREE, files.joinpath("remove_tree.sh").read_bytes()),
                               (SLUG_EXCLUDES, excludes_file(slugignore))):
                info = tarfile.TarInfo(path.lstrip("/"))  # root-owned
                info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
                tar.addfile(info, io.BytesIO(data))
            self._add_env_dir(tar, request.env)
        return packs, buildpacks_file is None, source

    @staticmethod
    def _add_env_dir(tar: tarfile.TarFile, env: dict[str, str]) -> None:
        def info(name: str, mode: int, kind: bytes, size: int = 0) -> tarfile.TarInfo:
            i = tarfile.TarInfo(name)
            i.type, i.mode, i.size, i.uid, i.gid = kind, mode, size, APP_UID, APP_UID
            i.mtime = int(time.time())
            return i

        tar.addfile(info(ENV_DIR.lstrip("/"), 0o700, tarfile.DIRTYPE))
        for key, value in sorted(env.items()):
            if "/" in key or key in ("", ".", ".."):
                continue
            data = value.encode()
            tar.addfile(info(f"{ENV_DIR.lstrip('/')}/{key}", 0o600, tarfile.REGTYPE, len(data)),
                        io.BytesIO(data))

    def _create(self, app: str, image: str, volume: str, life: int = 0) -> Any:
        """A build container, to be started; its own `sleep` ends it at the
        latest `life` seconds (a standby's wait) after the longest build."""
        s = self.settings
        return self.client.containers.create(
            image,
            command=["/usr/bin/tini", "-s", "--", "sleep", str(life + s.build_timeout + 120)],
            name=f"shipway-build-{s.instance}-{app}-{uuid.uuid4().hex[:8]}",
            labels={"shipway.instance": s.instance, "shipway.app": app,
                    "shipway.role": "build"},
            # Not BUILD_DIR: /workspace/app only exists once the first step ran.
            user=f"{APP_UID}:{APP_UID}", working_dir=WORKSPACE,
            environment={"HOME": BUILD_DIR, "STACK": "shipway-bookworm"},
            # The build's writes go to the volume's plain directory, not to
            # the container's copy-on-write layer, which on some storage
            # drivers (fuse-overlayfs) is several times slower.
            mounts=[docker.types.Mount(WORKSPACE, volume, type="volume")],
            cap_drop=["ALL"], security_opt=["no-new-privileges"],
            mem_limit=build_memory_bytes(s), memswap_limit=build_memory_bytes(s),
            nano_cpus=int(s.build_cpus * 1e9), pids_limit=s.build_pids,
            # issue 14: builds sit on a network of their own with outbound
            # access only (no other container, nothing of the host), and
            # their /tmp is a tmpfs of fixed size (charged to build_memory's
            # cgroup, so the limit grows by it), never the host's disk.
            network_mode=(ensure_build_network(self.client, s) if s.build_network else "none"),
            tmpfs={"/tmp": f"size={build_tmp_bytes(s)},mode=1777,exec,nosuid,nodev"},
            detach=True,
        )

    def _exec(self, container: Any, cmd: list[str], workdir: str) -> int:
        """Run `cmd` as the app user to its end; its exit status."""
        api = self.client.api
        exec_id = api.exec_create(container.id, cmd, user=f"{APP_UID}:{APP_UID}",
                                  workdir=workdir)["Id"]
        api.exec_start(exec_id)
        code = api.exec_inspect(exec_id).get("ExitCode")
        return code if code is not None else -1

    def _check(self, timed_out: threading.Event) -> None:
        if timed_out.is_set():
            raise self._timeout_error()

    def _timeout_error(self) -> BuildFailed:
        return BuildFailed(f"build timed out after {self.settings.build_timeout} s",
                           reason="build timed out")

    def _run_driver(self, container: Any, request: BuildRequest, packs: list[Buildpack],
                    detect_mode: bool, incoming: str, output: Output,
                    timed_out: threading.Event,
                    slug: SlugWriter) -> tuple[list[str], dict[str, str]]:
        """Run the driver: its stderr goes to the pusher and its events
        decide the result (or the failure); its stdout is the slug."""
        mark = f"@@shipway-{uuid.uuid4().hex}@@"
        events = DriverEvents(output, mark, packs)
        events.disk_limit = self.settings.build_disk
        lines = LineStream(events.line)
        api = self.client.api
        exec_id = api.exec_create(
            container.id, ["bash", DRIVER, mark, incoming, "first" if detect_mode else "all",
                           *[p.container_path for p in packs]],
            user=f"{APP_UID}:{APP_UID}", workdir=WORKSPACE,
            # issue 19: the server's proxy and index variables reach the
            # buildpacks here only (not ENV_DIR, not the slug).
            environment={**self.settings.build_env, "SOURCE_VERSION": request.commit})["Id"]
        # Docker copies the two streams separately, so their order relative
        # to each other is not kept: the slug counts only once the driver
        # said `done` (after packing) and exited 0, which result() checks.
        for out, err in api.exec_start(exec_id, stream=True, demux=True):
            if err:
                lines.feed(err)
            if out:
                slug.write(out)
        lines.close()
        code = api.exec_inspect(exec_id).get("ExitCode")
        self._check(timed_out)
        return events.result(code if code is not None else -1)
