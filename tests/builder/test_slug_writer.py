"""The slug stream as the builder receives it: hashed, measured, bounded, and
its unpacked size read from the gzip trailer (no Docker needed)."""
from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import pytest

from builder.slug import SlugWriter
from controller.errors import BuildFailed


def _write(writer: SlugWriter, data: bytes, sizes: list[int]) -> None:
    at, i = 0, 0
    while at < len(data):
        step = sizes[i % len(sizes)]
        writer.write(data[at:at + step])
        at, i = at + step, i + 1


@pytest.mark.parametrize("sizes", [[65536], [1], [3, 1, 2], [7, 4096]])
def test_unpacked_size_is_read_from_the_gzip_trailer(tmp_path: Path, sizes: list[int]) -> None:
    payload = os.urandom(30_000) + b"x" * 200_000
    packed = gzip.compress(payload)
    with SlugWriter(tmp_path / "slug.tgz", max_bytes=10**9) as writer:
        _write(writer, packed, sizes)  # chunks shorter than the 4-byte trailer too
    assert writer.unpacked_size == len(payload)
    assert writer.size == len(packed)
    assert writer.sha256 == hashlib.sha256(packed).hexdigest()
    assert (tmp_path / "slug.tgz").read_bytes() == packed


@pytest.mark.parametrize("data", [b"short", b"not a gzip stream, though long enough"])
def test_no_unpacked_size_without_a_gzip_stream(tmp_path: Path, data: bytes) -> None:
    with SlugWriter(tmp_path / "slug.tgz", max_bytes=100) as writer:
        _write(writer, data, [1])
    assert writer.unpacked_size is None


def test_an_over_size_slug_fails_as_it_arrives(tmp_path: Path) -> None:
    with SlugWriter(tmp_path / "slug.tgz", max_bytes=10) as writer:
        writer.write(b"x" * 10)
        with pytest.raises(BuildFailed) as info:
            writer.write(b"y")
    assert info.value.reason == "slug too large"
