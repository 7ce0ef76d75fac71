"""The hot upgrade's artefact is read from the slug's head on the host
(runner/hot_upgrade.py): only when it is the slug's first member, so that
a replica never waits for a whole slug to be inflated."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

from runner.hot_upgrade import UPGRADE_ARTEFACT, upgrade_artefact


def _slug(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_the_artefact_at_the_slug_head_is_read(tmp_path: Path) -> None:
    slug = _slug(tmp_path / "s.tar.gz", [(UPGRADE_ARTEFACT, b"inner tar"), ("Procfile", b"web: x\n")])
    assert upgrade_artefact(slug) == b"inner tar"


def test_no_artefact_unless_it_comes_first(tmp_path: Path) -> None:
    later = _slug(tmp_path / "later.tar.gz", [("Procfile", b"web: x\n"), (UPGRADE_ARTEFACT, b"inner")])
    assert upgrade_artefact(later) is None
    assert upgrade_artefact(_slug(tmp_path / "empty.tar.gz", [])) is None
    (tmp_path / "bad.tar.gz").write_bytes(b"not a slug")
    assert upgrade_artefact(tmp_path / "bad.tar.gz") is None
    assert upgrade_artefact(tmp_path / "missing.tar.gz") is None


def test_an_artefact_over_the_bound_is_not_read(tmp_path: Path, monkeypatch) -> None:
    """Its size is the push's to claim (a gzip bomb inflates on the host):
    past the bound the replicas fetch the slug instead."""
    import runner.hot_upgrade as hot
    monkeypatch.setattr(hot, "MAX_ARTEFACT_BYTES", 1000)
    big = _slug(tmp_path / "big.tar.gz", [(UPGRADE_ARTEFACT, b"\0" * 1001)])
    assert upgrade_artefact(big) is None
    fits = _slug(tmp_path / "fits.tar.gz", [(UPGRADE_ARTEFACT, b"\0" * 1000)])
    assert upgrade_artefact(fits) == b"\0" * 1000
