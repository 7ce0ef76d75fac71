"""A full disk fails a deploy with a clear error and loses nothing (issue 14):
the host slug cache (slugs kept elsewhere, S3) cannot take the slug. The
fault is injected in the store's download; the runner and Docker are real."""
from __future__ import annotations

import errno
from pathlib import Path

import pytest

from controller.errors import DeployFailed
from runner.docker_runner import DockerRunner
from runner.interface import ReleaseSpec
from core.settings import Settings
from tests.conftest import unique

pytestmark = [pytest.mark.docker]


class FullDiskStore:
    """A store elsewhere whose download finds the host's disk full midway."""

    def get(self, key: str, path: Path) -> None:
        Path(path).write_bytes(b"part of a slug")
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_fails_the_deploy_clearly_and_keeps_what_is_stored(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path, instance=unique("t"))
    runner = DockerRunner(settings, FullDiskStore(), router=None, state=None)
    runner._image = "not-needed"  # the failure comes before any container
    cache = tmp_path / "slug-cache" / "app"
    cache.mkdir(parents=True)
    (cache / "v1.tgz").write_bytes(b"an older slug")
    spec = ReleaseSpec(app="app", version=2, slug_key="app/v2.tgz", process_types={"web": "x"},
                       env={}, formation={"web": 1})
    lines: list[str] = []
    with pytest.raises(DeployFailed, match="v2 could not start: the server's disk is full"):
        runner.deploy(spec, lines.append)
    assert [p.name for p in cache.iterdir()] == ["v1.tgz"]  # no partial file, the old one kept
    assert (cache / "v1.tgz").read_bytes() == b"an older slug"
    assert "app" not in runner._desired  # what ran before is what runs
