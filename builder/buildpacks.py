"""Which buildpacks a build runs and how their files reach the container.

A `.buildpacks` line is a bundled buildpack's name (`python`, also written
`heroku/python`), a git URL with an optional `#ref` (fetched on the host with
the same rules as submodules), or a path *inside the app's source* (relative
to BUILD_DIR, e.g. `./tools/mybuildpack`): a push can never name host files.
Without the file, the bundled buildpacks are detected in DETECT_ORDER.
"""
from __future__ import annotations

import re
import tarfile
from importlib import resources
from pathlib import Path

import attrs

from builder.remote_git import check_remote_url, safe_git
from controller.errors import BuildFailed

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
    url, _, ref = entry.partition("#")
    reason = check_remote_url(url)
    if reason:
        raise BuildFailed(f"buildpack {url}: {reason}", reason="buildpack fetch failed")
    dest = work / f"buildpack-{index}"
    home = work / "git-home"
    home.mkdir(exist_ok=True)
    args = ["clone", "--quiet", "--depth", "1"]
    if ref:
        args += ["--branch", ref]
    done = safe_git(args + [url, str(dest)], home)
    if done.returncode != 0 and ref:  # a commit sha, not a branch or tag
        done = safe_git(["clone", "--quiet", url, str(dest)], home)
        if done.returncode == 0:
            done = safe_git(["-C", str(dest), "checkout", "--quiet", ref], home)
    if done.returncode != 0:
        raise BuildFailed(f"buildpack {entry} could not be fetched: {done.stderr.strip()}",
                          reason="buildpack fetch failed")
    name = url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git") or f"buildpack-{index}"
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
