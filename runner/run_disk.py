"""What a replica may write, and where (issue 14): a read-only root and
fixed-size tmpfs mounts adding up to SHIPWAY_RUN_DISK; a slug that unpacks
to more is refused."""
from __future__ import annotations

import attrs

from builder.stack import APP_UID
from runner.interface import ReleaseSpec
from core.settings import Settings, docker_bytes


class SlugTooBig(Exception):
    """A slug that unpacks to more than a replica may write (SHIPWAY_RUN_DISK)."""


SHIPWAY_DIR_SIZE = 8 * 1024 * 1024  # /shipway: sshd's keys, pid, log; the env copy
TMP_MAX = 256 * 1024 * 1024  # /tmp at most (a quarter of the run disk below that)
FILES_IN = "/shipway-in"  # root-owned volume with the entrypoint and env, read-only to the app


@attrs.frozen
class RunStorage:
    """Where a replica may write, and how much: its root filesystem is
    read-only, and every writable path is a tmpfs of fixed size, together
    `run_disk` (SHIPWAY_RUN_DISK). Docker here has no storage quotas
    (fuse-overlayfs: `--storage-opt size` is refused), and a loop-mounted
    image per replica would cost a file on the host and a loop device each.

    tmpfs pages are memory the container is charged for, so the runner grows
    the container's memory limit by `run_disk`: what the app writes never
    takes from its `run_memory`, and host memory is used only as far as the
    replica actually writes. A full tmpfs fails a write with ENOSPC, as a
    full disk would; the host's disk is never written."""

    workspace: int  # /workspace (where /app points; the app's HOME): the slug and the app's files
    tmp: int  # /tmp
    shipway: int  # /shipway

    @property
    def total(self) -> int:
        return self.workspace + self.tmp + self.shipway

    def tmpfs(self) -> dict[str, str]:
        owner = f"uid={APP_UID},gid={APP_UID}"
        return {"/workspace": f"size={self.workspace},mode=0755,{owner},exec,nosuid,nodev",
                "/tmp": f"size={self.tmp},mode=1777,exec,nosuid,nodev",
                "/shipway": f"size={self.shipway},mode=0700,{owner},noexec,nosuid,nodev"}


def run_storage(settings: Settings) -> RunStorage:
    """The replica's writable areas for the server's SHIPWAY_RUN_DISK."""
    total = max(docker_bytes(settings.run_disk), 32 * 1024 * 1024)
    tmp = min(TMP_MAX, total // 4)
    return RunStorage(workspace=total - tmp - SHIPWAY_DIR_SIZE, tmp=tmp,
                      shipway=SHIPWAY_DIR_SIZE)


def check_slug_fits(settings: Settings, spec: ReleaseSpec) -> None:
    """Refuse a slug whose recorded unpacked size is more than a replica's
    /workspace: it could never start. The entrypoint's unpack is bounded by
    the tmpfs all the same (a size not recorded, or many tiny files, which
    take a 4 KiB page each). The unpacked size is gzip's, modulo 4 GiB: one
    below 0.9x the compressed size is taken for a wrapped one, i.e. more."""
    room = run_storage(settings).workspace
    unpacked, packed = spec.slug_unpacked_size, spec.slug_size
    if packed is not None and packed > room:
        unpacked = packed
    elif unpacked is None or (packed is not None and unpacked < packed * 0.9):
        return
    if unpacked > room:
        raise SlugTooBig(f"slug unpacks to more than {_mb(room)} (it unpacks to "
                         f"{_mb(unpacked)}; a replica may write {settings.run_disk}, "
                         "SHIPWAY_RUN_DISK)")


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.0f} MB"
