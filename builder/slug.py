"""The slug: the build container's `/app` after compile, minus `.slugignore`
patterns, re-packed as a `.tar.gz` whose members are relative to `/app`
(`Procfile`, `_build/...`): a runner unpacks it with `tar -xzf - -C /app`.

The container's tar stream is read member by member (never extracted on the
host), and the gzip output is hashed and measured as it is written, so an
over-size slug fails as soon as it passes the limit.
"""
from __future__ import annotations

import fnmatch
import hashlib
import io
import tarfile
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from controller.errors import BuildFailed

COMPRESS_LEVEL = 1  # slugs are written on every push: favour speed


class ChunkReader(io.RawIOBase):
    """A file object over an iterator of byte chunks (Docker's archive stream)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buf = memoryview(b"")
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        # An offset into the current chunk: slicing a 1 MB chunk for every
        # small read would copy it over and over.
        while self._pos >= len(self._buf):
            try:
                self._buf, self._pos = memoryview(next(self._chunks)), 0
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf) - self._pos)
        b[:n] = self._buf[self._pos:self._pos + n]
        self._pos += n
        return n


class _MeasuredWriter(io.RawIOBase):
    """Hashes and counts what is written; refuses to pass `limit` bytes."""

    def __init__(self, out: BinaryIO, limit: int) -> None:
        self.out, self.limit = out, limit
        self.size = 0
        self.sha = hashlib.sha256()
        self.over = False

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if self.over:  # already failed: the tar's closing writes go nowhere
            return len(data)
        self.size += len(data)
        if self.size > self.limit:
            self.over = True
            raise BuildFailed(f"slug is larger than the limit of {_mb(self.limit)}",
                              reason="slug too large")
        self.sha.update(data)
        self.out.write(data)
        return len(data)


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def parse_slugignore(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Heroku's .slugignore, gitignore-style: a pattern with a slash matches
    from the app root, one without matches a name at any depth; a match on a
    directory drops everything below it."""
    parts = path.split("/")
    for pattern in patterns:
        pat = pattern.rstrip("/")
        anchored = "/" in pat
        pat = pat.lstrip("/")
        for i in range(1, len(parts) + 1):
            if anchored:
                if fnmatch.fnmatchcase("/".join(parts[:i]), pat):
                    return True
            elif fnmatch.fnmatchcase(parts[i - 1], pat):
                return True
    return False


def write_slug(chunks: Iterable[bytes], dest: Path, max_bytes: int,
               slugignore: list[str]) -> tuple[str, int]:
    """Re-pack Docker's archive of `/app` into `dest`; return (sha256, size)."""
    with open(dest, "wb") as raw:
        measured = _MeasuredWriter(raw, max_bytes)  # type: ignore[arg-type]
        source = io.BufferedReader(ChunkReader(chunks), 1024 * 1024)
        with tarfile.open(fileobj=source, mode="r|") as src, \
                tarfile.open(fileobj=measured, mode="w:gz",  # type: ignore[call-overload]
                             compresslevel=COMPRESS_LEVEL, format=tarfile.PAX_FORMAT) as out:
            for member in src:
                head, _, rest = member.name.partition("/")
                if not rest or head != "app":
                    continue  # the /app directory itself
                if ignored(rest, slugignore):
                    continue
                member.name = rest
                if member.isreg():
                    out.addfile(member, src.extractfile(member))
                elif member.isdir() or member.issym() or member.islnk():
                    if member.islnk():
                        target = member.linkname.partition("/")[2]
                        if ignored(target, slugignore):
                            continue
                        member.linkname = target
                    out.addfile(member)
                # devices and fifos have no place in a slug
        return measured.sha.hexdigest(), measured.size
