"""The in-memory builder: a real IBuilder without Docker, for the fast
tests of the pipeline and the API. It runs no buildpacks: the slug is the
pushed tree itself (`git archive` of the commit, gzipped tar members
relative to /app, as a Docker build's slug is), and the process types are
the Procfile's. A push without a Procfile fails as a Docker build with no
buildpack detected does. Deterministic: the same commit gives the same
slug bytes."""
from __future__ import annotations

import subprocess
import tempfile
import threading
from pathlib import Path

from zope.interface import implementer

from builder.docker_builder import parse_procfile
from builder.errors import BuildFailed
from builder.interface import BuildRequest, BuildResult, IBuilder
from builder.slug import SlugWriter
from builder.source import read_top_file
from core.output import Output
from core.settings import Settings

CHUNK = 64 * 1024


@implementer(IBuilder)
class MemoryBuilder:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.caches: dict[str, int] = {}  # app -> builds that used its cache
        self._lock = threading.Lock()

    def build(self, request: BuildRequest, output: Output) -> BuildResult:
        output(f"-----> Building {request.app} at {request.commit[:7]} (in-memory builder)")
        procfile = read_top_file(request.repo_path, request.commit, "Procfile")  # checks the sha
        process_types = parse_procfile(procfile or "")
        if not process_types:
            raise BuildFailed("no Procfile with a process type in the pushed tree",
                              reason="no buildpack detected")
        with self._lock:
            if request.clean_cache:
                self.caches.pop(request.app, None)
            self.caches[request.app] = self.caches.get(request.app, 0) + 1
        fd, name = tempfile.mkstemp(prefix="slug-", suffix=".tar.gz",
                                    dir=self.settings.data_dir if self.settings.data_dir.is_dir()
                                    else None)
        slug_path = Path(name)
        try:
            with open(fd, "wb"):
                pass
            with SlugWriter(slug_path, self.settings.max_slug_bytes) as slug:
                self._archive(request, slug)
            for ptype, command in sorted(process_types.items()):
                output(f"       {ptype}: {command}")
            output(f"-----> Slug {slug.size / 1024:.1f} KB, sha256 {slug.sha256[:12]}")
            return BuildResult(slug_path=slug_path, sha256=slug.sha256, size=slug.size,
                               process_types=process_types, buildpacks=["procfile"],
                               unpacked_size=slug.unpacked_size)
        except BaseException:
            slug_path.unlink(missing_ok=True)
            raise

    def _archive(self, request: BuildRequest, slug: SlugWriter) -> None:
        """The commit's tree as a gzipped tar (git archive: fixed mtimes,
        so the bytes depend on the tree alone), streamed into `slug`."""
        proc = subprocess.Popen(
            ["git", "--git-dir", str(request.repo_path), "archive", "--format=tar.gz",
             request.commit], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        try:
            while chunk := proc.stdout.read(CHUNK):
                slug.write(chunk)
        finally:
            proc.stdout.close()
            err = proc.stderr.read() if proc.stderr else b""
            code = proc.wait()
        if code != 0:
            raise BuildFailed(f"could not read the pushed tree: {err.decode(errors='replace')[-200:]}",
                              reason="build failed")

    def remove_cache(self, app: str) -> None:
        with self._lock:
            self.caches.pop(app, None)

    def cleanup_leftovers(self) -> None:
        """Nothing outlives a process."""

    def wait_for_cleanup(self, app: str | None = None, timeout: float | None = None) -> None:
        """Nothing is removed in the background."""

    def close(self, timeout: float | None = None) -> None:
        """Nothing is kept ready."""
