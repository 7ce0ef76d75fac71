"""The slug: the build container's `/app` after compile, minus `.slugignore`
patterns, as a `.tar.gz` whose members are relative to `/app` (`Procfile`,
`_build/...`): a runner unpacks it with `tar -xzf - -C /app`.

GNU tar and pigz (gzip where the stack lacks it) pack it inside the build
container, at the end of the build driver (files/run_buildpacks.sh), on the
exec's stdout; the host only stores the stream, hashing and measuring it as
it is written. Reading Docker's
archive endpoint through the SDK and re-packing it in Python took several
times longer (about 1.2 s against 0.4 s for the Elixir example's 12 MB).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from builder.errors import BuildFailed


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def parse_slugignore(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def tar_excludes(patterns: list[str]) -> list[str]:
    """GNU tar options that drop what Heroku's .slugignore drops, for member
    names relative to the app root (gitignore-style): a pattern with a slash
    matches from the root, where `*` may cross directories; one without
    matches a single name at any depth. An excluded directory takes
    everything below it with it (tar does not descend into it)."""
    options: list[str] = []
    for pattern in patterns:
        pat = pattern.rstrip("/")
        if not pat.strip("/"):
            continue  # "/" alone would drop the whole app: Heroku ignores it too
        if "/" in pat:
            options += ["--anchored", "--wildcards-match-slash", f"--exclude={pat.lstrip('/')}"]
        else:
            options += ["--no-anchored", "--no-wildcards-match-slash", f"--exclude={pat}"]
    return options


def excludes_file(patterns: list[str]) -> bytes:
    """tar_excludes as the build driver reads them: NUL-separated, so that
    no pattern is ever split or expanded by a shell."""
    return b"".join(option.encode() + b"\0" for option in tar_excludes(patterns))


class SlugWriter:
    """Writes the packed slug's stream to `dest` as it arrives, hashing and
    measuring it: an over-size slug fails as soon as it passes the limit."""

    def __init__(self, dest: Path, max_bytes: int) -> None:
        self.dest, self.max_bytes = dest, max_bytes
        self._sha, self.size = hashlib.sha256(), 0
        self._head = self._tail = b""
        self._out = open(dest, "wb")

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise BuildFailed(f"slug is larger than the limit of {_mb(self.max_bytes)}",
                              reason="slug too large")
        self._sha.update(chunk)
        if len(self._head) < 2:
            self._head += chunk[:2 - len(self._head)]
        self._tail = (self._tail + chunk[-4:])[-4:]
        self._out.write(chunk)

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    @property
    def unpacked_size(self) -> int | None:
        """The tar's size, from the gzip trailer (ISIZE, RFC 1952): what the
        runner sizes a replica's in-memory /app by, read for free as the
        stream passes. It is the size modulo 4 GiB, so a slug that unpacks
        to more would look small; the runner also bounds the compressed
        size (see runner/containers.py)."""
        if self.size < 18 or self._head != b"\x1f\x8b":  # not a gzip stream
            return None
        return int.from_bytes(self._tail, "little")

    def close(self) -> None:
        self._out.close()

    def __enter__(self) -> "SlugWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
