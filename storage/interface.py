"""The slug store contract. Keys look like "<app>/<sha256>.tar.gz"."""
from __future__ import annotations

from pathlib import Path

from zope.interface import Interface


class ISlugStore(Interface):
    def put(key: str, source: Path) -> None:
        """Store the file at `source` under `key` (atomically: a reader never
        sees a partial slug)."""

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
