"""Which buildpacks a build runs and how their files reach the container.

A `.buildpacks` line is a bundled buildpack's name (`python`, also written
`heroku/python`), a git URL with an optional `#ref` (fetched on the host with
the same rules as submodules, builder/remote_git.py: the ref must be a ref
name or a commit sha, never an option), or a path *inside the app's source* (relative
to BUILD_DIR, e.g. `./tools/mybuildpack`): a push can never name host files.
Without the file, the bundled buildpacks are detected in DETECT_ORDER.
"""
from __future__ import annotations

import re
import tarfile
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import attrs

from builder.fetch_words import redact_url
from builder.remote_git import check_ref, check_remote_url, clone_ref, fetch_home
from builder.errors import BuildFailed

DETECT_ORDER = ("elixir", "python", "nodejs", "procfile")
CONTAINER_ROOT = "/shipway/buildpacks"
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")


def bundled_dir() -> Path:
    """The bundled `buildpacks` package's folder (installed with Shipway)."""
    path = Path(str(resources.files("buildpacks")))
    if not (path / "procfile" / "bin" / "detect").is_file():
        raise RuntimeError(f"bundled buildpacks not found at {path}")
    return path


@attrs.frozen
class Buildpack:
    """One buildpack of a build: its display name and where it is in the
    container once `add_to_tar` has put it there."""

    name: str
    container_path: str
    host_path: Path | None = None  # None: it is in the app's source


def parse_buildpacks_file(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def resolve(entries: list[str], work: Path) -> list[Buildpack]:
    """Turn `.buildpacks` lines into buildpacks, fetching git ones to `work`."""
    packs: list[Buildpack] = []
    for index, entry in enumerate(entries):
        if "://" in entry:
            packs.append(_fetch(entry, index, work))
            continue
        name = entry.removeprefix("heroku/").removeprefix("shipway/")
        if _NAME.fullmatch(name) and (bundled_dir() / name / "bin").is_dir():
            packs.append(bundled(name))
        elif entry.startswith(("/", "..")) or "/../" in entry:
            raise BuildFailed(f".buildpacks: {entry!r} must be a bundled name, a git URL "
                              "or a path inside the app", reason="bad .buildpacks")
        elif "/" in entry or entry.startswith("."):
            packs.append(Buildpack(entry, "/app/" + entry.removeprefix("./").rstrip("/")))
        else:
            raise BuildFailed(f".buildpacks: no bundled buildpack named {entry!r} "
                              f"(bundled: {', '.join(DETECT_ORDER)})",
                              reason="bad .buildpacks")
    return packs


def bundled(name: str) -> Buildpack:
    return Buildpack(name, f"{CONTAINER_ROOT}/{name}", bundled_dir() / name)


def _fetch(entry: str, index: int, work: Path) -> Buildpack:
    """Clone a `.buildpacks` URL line (`URL#ref`) through the fetch guard."""
    url, _, ref = entry.partition("#")
    shown = redact_url(url)
    reason = check_remote_url(url) or (check_ref(ref) if ref else None)
    if reason:
        what = f"ref {ref[:60]!r}" if not check_remote_url(url) else "URL"
        raise BuildFailed(f".buildpacks: buildpack {shown}: {what} refused: {reason}",
                          reason="bad .buildpacks")
    dest = work / f"buildpack-{index}"
    why = clone_ref(url, ref, dest, fetch_home(work))
    if why:
        at = f" at {ref}" if ref else ""
        raise BuildFailed(f"buildpack {shown}{at} could not be fetched: {why}",
                          reason="buildpack fetch failed")
    path_name = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    name = path_name if _NAME.fullmatch(path_name.lower()) else f"buildpack-{index}"
    return Buildpack(name, f"{CONTAINER_ROOT}/{index}-{name}", dest)


def add_to_tar(tar: tarfile.TarFile, packs: list[Buildpack]) -> None:
    """Put the host-side buildpacks in the build tar (owned by root, so the
    build cannot change them)."""
    seen: set[str] = set()
    # The helpers the bundled compile scripts source (../../env.sh).
    tar.add(str(bundled_dir() / "env.sh"), arcname=f"{CONTAINER_ROOT.lstrip('/')}/env.sh",
            filter=_root_owned)
    for pack in packs:
        if pack.host_path is None or pack.container_path in seen:
            continue
        seen.add(pack.container_path)
        tar.add(str(pack.host_path), arcname=pack.container_path.lstrip("/"),
                filter=_root_owned)


def _root_owned(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Readable by all, owned by root, without git's own files."""
    if "/.git/" in f"/{info.name}/":
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    # bin/ scripts run whatever mode an install or checkout left them with.
    executable = info.isdir() or info.mode & 0o100 or "/bin/" in f"/{info.name}"
    info.mode |= 0o444 | (0o111 if executable else 0)
    return info
