"""The build workspace of each app on a disk of fixed size (SHIPWAY_BUILD_DISK).

A build writes its source, its /app and the app's cache into the app's build
volume, which must outlive the build (the cache) and must not fill the host.
Docker here has no storage quotas (fuse-overlayfs), its local volume driver
of this version takes no `o=loop`, and a tmpfs would lose the cache and
charge it to memory. So the volume is an ext4 filesystem in a sparse image
file under the data dir (`build-disks/`), attached to a loop device by
Shipway and mounted by Docker's local driver (`type=ext4,device=/dev/loopN`):
a build that writes past it gets ENOSPC, the host's disk only ever holds
what the image really uses. The loop device is found again by its backing
file (after a reboot one is attached anew and the volume's options
rewritten, the data kept). Measured here: 200 MB written at ~210 MB/s.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import docker.errors
from twisted.logger import Logger

from builder.networks import build_tmp_bytes
from builder.stack import APP_UID
from core.settings import Settings, docker_bytes

log = Logger()


def image_path(settings: Settings, app: str) -> Path:
    return Path(settings.data_dir) / "build-disks" / f"{settings.instance}-{app}.img"


def _run(*args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60,
                          check=True).stdout.strip()


def attached(image: Path) -> str | None:
    """The loop device the image is attached to, if any."""
    try:
        said = _run("losetup", "-j", str(image))
    except (subprocess.SubprocessError, OSError):
        return None
    return said.split(":", 1)[0] if said else None


def usable(settings: Settings) -> bool:
    """Whether build disks can be made here (a size set, root's tools)."""
    return (docker_bytes(settings.build_disk) > 0 and shutil.which("losetup") is not None
            and shutil.which("mkfs.ext4") is not None)


def ensure_volume(client: Any, settings: Settings, app: str, name: str,
                  labels: dict[str, str]) -> None:
    """The app's build volume `name`, on its fixed-size disk."""
    image = image_path(settings, app)
    if not image.exists():
        image.parent.mkdir(parents=True, exist_ok=True)
        tmp = image.with_suffix(".new")
        with open(tmp, "wb") as f:
            # The build's /tmp (a tmpfs) takes its share of the build disk.
            f.truncate(docker_bytes(settings.build_disk) - build_tmp_bytes(settings))
        _run("mkfs.ext4", "-q", "-F", "-m", "0", "-E",
             f"root_owner={APP_UID}:{APP_UID},lazy_itable_init=1", str(tmp))
        tmp.rename(image)
    device = attached(image) or _run("losetup", "--find", "--show", "--nooverlap", str(image))
    try:
        volume = client.volumes.get(name)
        if (volume.attrs.get("Options") or {}).get("device") == device:
            return
        volume.remove(force=True)  # a plain volume of an older Shipway, or another device
    except docker.errors.NotFound:
        pass
    client.volumes.create(name, driver="local", labels=labels,
                          driver_opts={"type": "ext4", "device": device,
                                       "o": "nosuid,nodev"})


def remove_disk(settings: Settings, app: str) -> None:
    """Detach and delete the app's build disk (its volume removed first)."""
    image = image_path(settings, app)
    device = attached(image)
    if device:
        try:
            _run("losetup", "-d", device)
        except (subprocess.SubprocessError, OSError) as exc:
            log.warn("builder: could not detach {device}: {error}", device=device, error=str(exc))
    image.unlink(missing_ok=True)
