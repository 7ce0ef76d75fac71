"""The default slug store: a directory under the data dir, with download URLs
on the API port signed by HMAC-SHA256 over the key and the expiry.

The signature deliberately leaves out the host: the runner may rewrite the
URL's host so that containers reach the API, and that must not break it.
"""
from __future__ import annotations

import errno
import hashlib
import hmac
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from zope.interface import implementer

from core.private_files import load_or_create_secret
from core.settings import Settings
from storage.interface import ISlugStore, SlugStoreFull

# Errors that mean "no room": a full file system or the user's disk quota.
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)

_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*")


def check_key(key: str) -> str:
    """Keys are relative paths of plain names: nothing can climb out of the
    store's directory or name a temp file."""
    if not _KEY.fullmatch(key) or ".." in key.split("/"):
        raise ValueError(f"invalid slug key {key!r}")
    return key


@implementer(ISlugStore)
class LocalSlugStore:
    """Slugs as files under `<data_dir>/slugs/` (or another `root`: the
    Docker runner's cache of slugs kept in S3)."""

    def __init__(self, settings: Settings, root: Path | None = None) -> None:
        self.settings = settings
        self.root = root or settings.data_dir / "slugs"
        self.root.mkdir(parents=True, exist_ok=True)
        self._secret = load_or_create_secret(settings.data_dir / "slug-url.secret")

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, source: Path) -> None:
        """Written to a hidden temp file in the key's folder, fsynced, then
        renamed over the key: a full disk (or any failure) mid-write leaves
        the stored slugs as they were and no partial file."""
        dest = self.path(key)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".put-", dir=dest.parent)
        except OSError as e:
            if e.errno in FULL_ERRNOS:
                raise SlugStoreFull() from e
            raise
        try:
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                shutil.copyfileobj(src, out, 1024 * 1024)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest)  # readers see the old file or the whole new one
        except BaseException as e:
            with _ignore_missing():
                os.unlink(tmp)
            if isinstance(e, OSError) and e.errno in FULL_ERRNOS:
                raise SlugStoreFull() from e
            raise

    def get(self, key: str, dest: Path) -> None:
        try:
            shutil.copyfile(self.path(key), dest)
        except FileNotFoundError:
            raise KeyError(key) from None

    def delete(self, key: str) -> None:
        with _ignore_missing():
            os.unlink(self.path(key))

    def delete_prefix(self, prefix: str) -> None:
        prefix = prefix.rstrip("/")
        target = self.path(prefix)
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            for match in target.parent.glob(target.name + "*"):
                if match.is_file():
                    self.delete(str(match.relative_to(self.root)))

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def keep_newest(self, prefix: str, count: int) -> None:
        """Delete all but the `count` most recently used slugs under `prefix`
        (a cache's bound; use means a write or `touch`), and hidden partial
        files older than an hour (a download cut off by a crash)."""
        folder = self.path(prefix.rstrip("/"))
        if not folder.is_dir():
            return
        files = sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
                       key=lambda p: p.stat().st_mtime, reverse=True)
        stale = time.time() - 3600
        for old in files[count:] + [p for p in folder.iterdir() if p.name.startswith(".")]:
            with _ignore_missing():
                if not old.name.startswith(".") or old.stat().st_mtime < stale:
                    old.unlink()

    # --- signed URLs -------------------------------------------------------------

    def signature(self, key: str, expires: int) -> str:
        message = f"{check_key(key)}\n{int(expires)}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def url(self, key: str, expires_in: int = 600) -> str:
        expires = int(time.time()) + int(expires_in)
        return (f"{self.settings.api_url}/slugs/{quote(check_key(key))}"
                f"?expires={expires}&signature={self.signature(key, expires)}")

    def verify(self, key: str, expires: str, signature: str) -> bool:
        """Whether a download of `key` is allowed: an unexpired expiry and the
        right signature, compared in constant time."""
        try:
            check_key(key)
            when = int(expires)
        except ValueError:
            return False
        if when < time.time():
            return False
        return hmac.compare_digest(self.signature(key, when), signature)


class _ignore_missing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: object, tb: object) -> bool:
        return isinstance(exc, FileNotFoundError)
