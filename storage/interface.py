"""The slug store contract. Keys look like "<app>/<sha256>.tar.gz"."""
from __future__ import annotations

from pathlib import Path

from zope.interface import Interface


class SlugStoreFull(Exception):
    """A slug could not be stored for want of space (ENOSPC, a quota, a
    full S3-compatible service). Nothing already stored was touched and no
    partial slug is left; the push that made it is rejected."""

    def __init__(self, message: str = "no space left on the server's slug store") -> None:
        super().__init__(message)
        self.message = message


class ISlugStore(Interface):
    def put(key: str, source: Path) -> None:
        """Store the file at `source` under `key` (atomically: a reader never
        sees a partial slug, and a failed put leaves nothing behind). Raises
        SlugStoreFull when the store has no room for it."""

    def get(key: str, dest: Path) -> None:
        """Copy the slug to `dest`. Raises KeyError if missing."""

    def delete(key: str) -> None:
        """Remove it; missing keys are ignored."""

    def delete_prefix(prefix: str) -> None:
        """Remove every key under `prefix` (an app's slugs on destroy)."""

    def exists(key: str) -> bool:
        """Whether the key is stored."""

    def url(key: str, expires_in: int = 600) -> str:
        """A download URL valid for `expires_in` seconds, usable without any
        other credential (what a run container fetches its slug with)."""
