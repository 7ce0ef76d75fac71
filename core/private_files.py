"""Secret files (keys, signing secrets, the CLI's credentials): readable by
their owner only and never visible half written. One implementation for
every part that keeps a secret on disk."""
from __future__ import annotations

import os
import secrets
from pathlib import Path


def _write_aside(path: Path, data: bytes) -> Path:
    """Write `data` to a fresh 0600 temp file beside `path`, synced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_private(path: Path, data: bytes) -> None:
    """Replace the file atomically."""
    tmp = _write_aside(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def create_private_once(path: Path, data: bytes) -> bool:
    """Create the file only if it does not exist (hard-linked into place, so
    two processes starting together agree on one). Returns whether this call
    created it."""
    tmp = _write_aside(path, data)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def load_or_create_secret(path: Path, nbytes: int = 32) -> bytes:
    """A random hex secret kept in `path`, made on first use."""
    create_private_once(path, secrets.token_hex(nbytes).encode() + b"\n")
    return path.read_bytes().strip()
