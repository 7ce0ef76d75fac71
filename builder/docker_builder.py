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
made on the host; nothing of the host is mounted. Steps run as `docker exec`
as the `app` user, with every output line streamed to the pusher; a timer
kills the container at the deadline. The container and the build's source
are removed in the background once the slug is stored (a killed server's
leftovers at its next start), so the push goes on to deploy meanwhile.
"""
from __future__ import annotations

import io
import shutil
import tarfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import docker
import docker.errors
import yaml
from dulwich.repo import Repo
from twisted.logger import Logger
from zope.interface import implementer

from builder.buildpacks import DETECT_ORDER, Buildpack, add_to_tar, bundled, parse_buildpacks_file, resolve
from builder.interface import BuildRequest, BuildResult, IBuilder, Output
from builder.slug import PACK_SCRIPT, parse_slugignore, save_slug, tar_excludes
from builder.source import export_source, new_work_dir
from builder.stack import APP_UID, ensure_stack_image
from controller.errors import BuildFailed
from server.settings import Settings

BUILD_DIR, CACHE_DIR, ENV_DIR = "/app", "/cache", "/shipway/env"
WORKSPACE = "/workspace"  # the app's build volume; /app and /cache point into it

# The first step: the build's source, put in the volume under a name of its
# own before the container started, becomes /workspace/app. What an
# interrupted build left there goes first.
PREPARE_SCRIPT = """set -e
cd /workspace
for d in app incoming-*; do
  [ "$d" = "$1" ] || rm -rf -- "$d"
done
mv -- "$1" app
mkdir -p cache
"""
log = Logger()


def parse_procfile(text: str) -> dict[str, str]:
    types: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.lstrip().startswith("#") and command.strip():
            types[name.strip()] = command.strip()
    return types


def _read_file(repo_path: Path, commit: str, name: bytes) -> str | None:
    """A top-level file of the commit, or None (for .buildpacks, .slugignore)."""
    repo = Repo(str(repo_path))
    try:
        tree = repo[repo[commit.encode()].tree]
        try:
            _, sha = tree.lookup_path(repo.object_store.__getitem__, name)
        except KeyError:
            return None
        return repo[sha].data.decode("utf-8", "replace")
    finally:
        repo.close()


class _LineStream:
    """Splits exec output chunks into lines for `output`."""

    def __init__(self, output: Output) -> None:
        self.output, self.buf = output, b""

    def feed(self, chunk: bytes) -> None:
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            self.output(line.rstrip(b"\r").decode("utf-8", "replace"))

    def close(self) -> None:
        if self.buf:
            self.output(self.buf.decode("utf-8", "replace"))
            self.buf = b""


@implementer(IBuilder)
class DockerBuilder:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.temp_base = settings.data_dir / "tmp" / "builds"
        self._client: docker.DockerClient | None = None
        # app -> the thread removing its last build container: the next build
        # of that app waits for it, as they share the app's build volume.
        self._cleanups: dict[str, threading.Thread] = {}

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            # Long enough for a silent compile step: the build's own timer,
            # not an HTTP read timeout, is what ends a stuck build.
            self._client = docker.from_env(timeout=self.settings.build_timeout + 120)
        return self._client

    def build_volume_name(self, app: str) -> str:
        return f"shipway-build-{self.settings.instance}-{app}"

    def _legacy_volume_name(self, app: str) -> str:
        """The cache-only volume of Shipway before the workspace layout."""
        return f"shipway-cache-{self.settings.instance}-{app}"

    def wait_for_cleanup(self, app: str | None = None, timeout: float = 120) -> None:
        """Block until the background removal of `app`'s (or every app's)
        last build container is done."""
        for name, thread in list(self._cleanups.items()):
            if app is None or name == app:
                thread.join(timeout)

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
            packs, detect_mode, slugignore = self._prepare(request, work, incoming, output)
            volume = self._build_volume(request.app, request.clean_cache, output)
            container = self._create(request.app, image, volume)
            with open(work / "input.tar", "rb") as archive:
                container.put_archive("/", archive)
            container.start()
            code, said = self._exec(container, ["bash", "-c", PREPARE_SCRIPT, "prepare", incoming],
                                    None, workdir=WORKSPACE)
            if code != 0:
                raise BuildFailed("could not prepare the build workspace: "
                                  + said.decode("utf-8", "replace").strip()[-500:],
                                  reason="build failed")

            def expire() -> None:
                timed_out.set()
                try:
                    container.kill()
                except docker.errors.APIError:
                    pass

            timer = threading.Timer(self.settings.build_timeout, expire)
            timer.daemon = True
            timer.start()
            result = self._run_buildpacks(container, request, packs, detect_mode, output,
                                          timed_out)
            output("-----> Compressing the slug")
            sha, size = self._slug(container, slug_path, slugignore)
            self._check(timed_out)
            output(f"-----> Slug {size / 1024 / 1024:.1f} MB, sha256 {sha[:12]}")
            log.info("build of {app} at {commit}: slug {sha} ({size} bytes) by {packs}",
                     app=request.app, commit=request.commit, sha=sha, size=size, packs=result[0])
            return BuildResult(slug_path=slug_path, sha256=sha, size=size,
                               process_types=result[1], buildpacks=result[0])
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
            raise BuildFailed(f"build error: {e}", reason="build failed") from e
        finally:
            if timer is not None:
                timer.cancel()
            if container is not None:
                self._remove_in_background(request.app, container)
            shutil.rmtree(work, ignore_errors=True)

    def _remove_in_background(self, app: str, container: Any) -> None:
        """Empty /workspace/app (the cache stays) and remove the container,
        off the push's path; a server killed meanwhile leaves a labelled
        container that `cleanup_leftovers` removes at its next start, and a
        source dir that the next build's first step removes."""
        def run() -> None:
            try:
                self._exec(container, ["rm", "-rf", "--", f"{WORKSPACE}/app"], None,
                           workdir=WORKSPACE)
            except docker.errors.APIError:
                pass  # stopped (timeout, kill): the next build empties it
            try:
                container.remove(force=True, v=True)
            except docker.errors.APIError:
                pass

        thread = threading.Thread(target=run, name=f"build-cleanup-{app}", daemon=True)
        self._cleanups[app] = thread
        thread.start()

    def remove_cache(self, app: str) -> None:
        self.wait_for_cleanup(app)
        for name in (self.build_volume_name(app), self._legacy_volume_name(app)):
            try:
                self.client.volumes.get(name).remove(force=True)
            except docker.errors.NotFound:
                pass

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
                 output: Output) -> tuple[list[Buildpack], bool, list[str]]:
        """Write the input tar (source, buildpacks, ENV_DIR)."""
        output(f"-----> Fetching source {request.commit[:12]}")
        buildpacks_file = _read_file(request.repo_path, request.commit, b".buildpacks")
        slugignore = parse_slugignore(
            _read_file(request.repo_path, request.commit, b".slugignore") or "")
        with tarfile.open(work / "input.tar", "w", format=tarfile.PAX_FORMAT) as tar:
            export_source(request.repo_path, request.commit, tar, work, output, uid=APP_UID,
                          prefix=f"{WORKSPACE.lstrip('/')}/{incoming}")
            if buildpacks_file is not None:
                packs = resolve(parse_buildpacks_file(buildpacks_file), work)
                if not packs:
                    raise BuildFailed(".buildpacks lists no buildpack", reason="bad .buildpacks")
            else:
                packs = [bundled(name) for name in DETECT_ORDER]
            add_to_tar(tar, packs)
            self._add_env_dir(tar, request.env)
        return packs, buildpacks_file is None, slugignore

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

    def _build_volume(self, app: str, clean: bool, output: Output) -> str:
        name = self.build_volume_name(app)
        if clean:
            output("-----> Clearing the build cache")
            self.remove_cache(app)
        try:
            self.client.volumes.get(name)
        except docker.errors.NotFound:
            self.client.volumes.create(name, labels={
                "shipway.instance": self.settings.instance, "shipway.app": app,
                "shipway.role": "cache"})
        return name

    def _create(self, app: str, image: str, volume: str) -> Any:
        s = self.settings
        return self.client.containers.create(
            image,
            command=["/usr/bin/tini", "-s", "--", "sleep", str(s.build_timeout + 120)],
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
            mem_limit=s.build_memory, memswap_limit=s.build_memory,
            nano_cpus=int(s.build_cpus * 1e9), pids_limit=s.build_pids,
            network_mode="bridge" if s.build_network else "none",
            detach=True,
        )

    def _slug(self, container: Any, dest: Path, slugignore: list[str]) -> tuple[str, int]:
        """Pack `/app` in the container (tar | gzip, as the app user) and
        store the stream; a failed pack fails the build with tar's words."""
        api = self.client.api
        exec_id = api.exec_create(
            container.id, ["bash", "-c", PACK_SCRIPT, "pack", BUILD_DIR, *tar_excludes(slugignore)],
            user=f"{APP_UID}:{APP_UID}", workdir=BUILD_DIR)["Id"]
        errors = bytearray()

        def stdout() -> Iterator[bytes]:
            for out, err in api.exec_start(exec_id, stream=True, demux=True):
                if err:
                    errors.extend(err)
                    del errors[:-2000]
                if out:
                    yield out

        result = save_slug(stdout(), dest, self.settings.max_slug_bytes)
        code = api.exec_inspect(exec_id).get("ExitCode")
        if code != 0:
            said = errors.decode("utf-8", "replace").strip()
            raise BuildFailed(f"could not pack the slug (exit {code}): {said}",
                              reason="build failed")
        return result

    def _exec(self, container: Any, cmd: list[str], output: Output | None,
              env: dict[str, str] | None = None,
              workdir: str = BUILD_DIR) -> tuple[int, bytes]:
        """Run `cmd` as the app user; stream lines to `output` or collect them."""
        api = self.client.api
        exec_id = api.exec_create(container.id, cmd, user=f"{APP_UID}:{APP_UID}",
                                  workdir=workdir, environment=env or {})["Id"]
        collected = b""
        lines = _LineStream(output) if output else None
        for chunk in api.exec_start(exec_id, stream=True):
            if lines:
                lines.feed(chunk)
            else:
                collected += chunk
        if lines:
            lines.close()
        code = api.exec_inspect(exec_id).get("ExitCode")
        return (code if code is not None else -1), collected

    def _check(self, timed_out: threading.Event) -> None:
        if timed_out.is_set():
            raise self._timeout_error()

    def _timeout_error(self) -> BuildFailed:
        return BuildFailed(f"build timed out after {self.settings.build_timeout} s",
                           reason="build timed out")

    def _run_buildpacks(self, container: Any, request: BuildRequest, packs: list[Buildpack],
                        detect_mode: bool, output: Output,
                        timed_out: threading.Event) -> tuple[list[str], dict[str, str]]:
        env = {"SOURCE_VERSION": request.commit}
        chosen: list[tuple[Buildpack, str]] = []
        if detect_mode:
            chosen = self._detect_first(container, packs, env)
            self._check(timed_out)
        for pack in packs if not detect_mode else []:
            code, said = self._exec(container, [f"{pack.container_path}/bin/detect", BUILD_DIR],
                                    None, env)
            self._check(timed_out)
            label = said.decode("utf-8", "replace").strip().splitlines()[-1:] or [pack.name]
            if code != 0:
                raise BuildFailed(f"buildpack {pack.name}: this app is not compatible "
                                  f"(bin/detect exited {code})", reason="build failed")
            chosen.append((pack, label[0]))
        if not chosen:
            raise BuildFailed("no buildpack detected: add a Procfile, mix.exs, "
                              "requirements.txt or package.json, or a .buildpacks file",
                              reason="no buildpack detected")
        defaults: dict[str, str] = {}
        for pack, label in chosen:
            output(f"-----> {label} app detected")
            code, _ = self._exec(container, [f"{pack.container_path}/bin/compile", BUILD_DIR,
                                             CACHE_DIR, ENV_DIR], output, env)
            self._check(timed_out)
            if code != 0:
                raise BuildFailed(f"buildpack {pack.name}: compile failed (exit {code})",
                                  reason="build failed")
            defaults.update(self._release(container, pack, env, timed_out))
        code, procfile = self._exec(container, ["cat", f"{BUILD_DIR}/Procfile"], None)
        process_types = {**defaults, **(parse_procfile(procfile.decode("utf-8", "replace"))
                                         if code == 0 else {})}
        if process_types:
            output("-----> Process types: " + ", ".join(sorted(process_types)))
        return [p.name for p, _ in chosen], process_types

    def _detect_first(self, container: Any, packs: list[Buildpack],
                      env: dict[str, str]) -> list[tuple[Buildpack, str]]:
        """Run the bundled `bin/detect`s in order in one exec (first match
        wins): each exec costs a few Docker API round trips."""
        script = ('i=0; for pack in "$@"; do '
                  'if out=$("$pack/bin/detect" "$BUILD" 2>/dev/null); then '
                  'printf "%s\\n%s\\n" "$i" "$out"; exit 0; fi; i=$((i+1)); done; exit 1')
        code, said = self._exec(
            container, ["bash", "-c", script, "detect", *[p.container_path for p in packs]],
            None, {**env, "BUILD": BUILD_DIR})
        if code != 0:
            return []
        lines = said.decode("utf-8", "replace").strip().splitlines()
        pack = packs[int(lines[0])]
        return [(pack, lines[-1] if len(lines) > 1 else pack.name)]

    def _release(self, container: Any, pack: Buildpack, env: dict[str, str],
                 timed_out: threading.Event) -> dict[str, str]:
        """`bin/release` is optional; its YAML's default_process_types count."""
        # One exec: exit status 100 (after the -x test) means "no bin/release".
        code, said = self._exec(container, [
            "bash", "-c", '[ -x "$1/bin/release" ] || exit 100; exec "$1/bin/release" "$2"',
            "release", pack.container_path, BUILD_DIR], None, env)
        self._check(timed_out)
        if code == 100 and not said:
            return {}
        if code != 0:
            raise BuildFailed(f"buildpack {pack.name}: release failed (exit {code}): "
                              f"{said.decode('utf-8', 'replace').strip()[-500:]}",
                              reason="build failed")
        try:
            data = yaml.safe_load(said.decode("utf-8", "replace")) or {}
        except yaml.YAMLError as e:
            raise BuildFailed(f"buildpack {pack.name}: bin/release printed invalid YAML: {e}",
                              reason="build failed") from None
        types = data.get("default_process_types") if isinstance(data, dict) else None
        return {str(k): str(v) for k, v in (types or {}).items()}
