"""The builder contract: sources and slugs in, no users."""
from __future__ import annotations

from pathlib import Path

import attrs
from zope.interface import Interface

from core.output import Output


@attrs.frozen
class BuildRequest:
    app: str
    repo_path: Path  # bare repository holding `commit`
    commit: str  # hex sha of the commit to build
    env: dict[str, str]  # config vars, written to ENV_DIR inside the build only
    clean_cache: bool = False


@attrs.frozen
class BuildResult:
    slug_path: Path  # a temp .tar.gz the caller stores then deletes
    sha256: str
    size: int
    process_types: dict[str, str]  # Procfile merged over bin/release defaults
    buildpacks: list[str]
    unpacked_size: int | None = None  # the slug's tar bytes (gzip ISIZE)


class IBuilder(Interface):
    def build(request: BuildRequest, output: Output) -> BuildResult:
        """Run the build, streaming every line to `output` as it is produced.
        Raises controller.errors.BuildFailed with a short push-rejection reason."""

    def remove_cache(app: str) -> None:
        """Drop an app's build cache (on destroy)."""

    def cleanup_leftovers() -> None:
        """Remove build containers and temp files a killed server left."""

    def wait_for_cleanup(app: str | None = None, timeout: float | None = None) -> None:
        """Wait for the removal of finished builds' containers (of `app`, or
        all), which goes on in the background after `build` returns."""

    def close(timeout: float | None = None) -> None:
        """On server shutdown: finish the background work (waiting at most
        `timeout` for it) and remove what was kept ready for later builds."""
