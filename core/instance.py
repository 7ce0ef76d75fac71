"""The server's instance name: the Docker label (`shipway.instance`) and
name part of every container, volume, network and firewall chain it makes,
so that two servers on one Docker engine never adopt or remove each
other's. Unless set (SHIPWAY_INSTANCE, --instance, the YAML file), it is
generated once per data dir and kept there: two servers with their own data
dirs are two instances without anyone choosing names."""
from __future__ import annotations

import re
import secrets
import string
from pathlib import Path

from core.private_files import create_private_once

INSTANCE_FILE = "instance"
# What servers before per-data-dir instances all used: a data dir that
# already holds state keeps it, so its running containers are still its own.
LEGACY_INSTANCE = "default"
_ALPHABET = string.ascii_lowercase + string.digits
_VALID = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}\Z")


def valid_instance(name: str) -> bool:
    """Short, lowercase: it goes into container and network names."""
    return bool(_VALID.match(name))


def generate_instance() -> str:
    """Random, short, lowercase alphanumeric, starting with a letter."""
    return secrets.choice(string.ascii_lowercase) + "".join(
        secrets.choice(_ALPHABET) for _ in range(7))


def _has_state(data_dir: Path) -> bool:
    """Whether a server has run on this data dir (anything but our own files)."""
    try:
        return any(not p.name.startswith(".") and p.name != INSTANCE_FILE
                   for p in data_dir.iterdir())
    except FileNotFoundError:
        return False


def instance_for(data_dir: Path) -> tuple[str, str]:
    """The data dir's instance and where it came from, made on first use:
    `default` for a data dir that already holds state (an install older
    than this file), otherwise a fresh random one. Two processes starting on
    one new data dir agree (the file is created once, atomically)."""
    path = data_dir / INSTANCE_FILE
    if path.is_file():
        how = f"file {path}"
    else:
        legacy = _has_state(data_dir)
        name = LEGACY_INSTANCE if legacy else generate_instance()
        create_private_once(path, name.encode() + b"\n")
        how = (f"file {path} (written as {LEGACY_INSTANCE!r}: the data dir held state "
               "from before per-data-dir instances)" if legacy
               else f"file {path} (generated)")
    name = path.read_text().strip()
    if not valid_instance(name):
        raise ValueError(f"{path}: not an instance name (lowercase letters, digits, '-'): "
                         f"{name[:40]!r}")
    return name, how


def read_instance(data_dir: Path) -> str | None:
    """The instance kept in a data dir, None if none is (never creates one)."""
    try:
        name = (data_dir / INSTANCE_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    return name if valid_instance(name) else None
