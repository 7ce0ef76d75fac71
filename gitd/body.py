"""A git smart-HTTP request body as a stream, inflated as it is read when it
came gzip-encoded, and bounded by its *uncompressed* size.

Why: the HTTP body limit (server/web.py) counts the bytes on the wire, and
300 KB of gzip inflate to 300 MB. Reading such a body whole (as
`GzipFile.read()` does) grew the server by that much; here each `read(n)`
inflates at most `n` bytes (zlib's `max_length`), so memory stays at one
chunk whatever the ratio, and passing `limit` inflated bytes raises
`BodyTooLarge` for a 413.
"""
from __future__ import annotations

import zlib
from typing import BinaryIO

# Compressed bytes taken from the spooled body per step.
STEP = 64 * 1024


class BodyTooLarge(Exception):
    """The body inflates to more than its limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes once decompressed")
        self.limit = limit


class BadBody(Exception):
    """The body claims gzip and is not."""


def is_gzip(content_encoding: bytes | None) -> bool:
    return (content_encoding or b"").strip().lower() in (b"gzip", b"x-gzip")


class RequestBody:
    """`read(n)` / `recv(n, timeout)` / `eof` over a spooled request body
    (the `Source` the pack ingester and upload-pack feeder read)."""

    def __init__(self, raw: BinaryIO, gzipped: bool, limit: int) -> None:
        self.raw = raw
        self.limit = limit
        self.total = 0  # bytes handed out (inflated)
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
        self._pending = b""  # compressed input zlib has not consumed yet
        self._raw_eof = False
        self._eof = False
        raw.seek(0)

    def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes (n < 0: a chunk of at most STEP); b"" at the end."""
        if n == 0 or self._eof:
            return b""
        n = STEP if n < 0 else n
        data = self._inflate(n) if self._z is not None else self.raw.read(n)
        if not data:
            self._eof = True
            return b""
        self.total += len(data)
        if self.total > self.limit:
            raise BodyTooLarge(self.limit)
        return data

    def recv(self, n: int, timeout: float | None = None) -> bytes:
        return self.read(n)

    @property
    def eof(self) -> bool:
        return self._eof

    def _inflate(self, n: int) -> bytes:
        z = self._z
        assert z is not None
        while True:
            try:
                if z.unconsumed_tail:
                    out = z.decompress(z.unconsumed_tail, n)
                elif self._pending:
                    out, self._pending = z.decompress(self._pending, n), b""
                else:
                    out = b""
            except zlib.error as err:
                raise BadBody(f"bad gzip request body: {err}") from None
            if out:
                return out
            if z.eof:
                # One gzip member is the whole body, as git sends it.
                return b""
            if self._raw_eof:
                raise BadBody("truncated gzip request body")
            chunk = self.raw.read(STEP)
            if not chunk:
                self._raw_eof = True
                continue
            self._pending = chunk
