"""Slug pruning's rule on a real controller (SQLite) and a real local slug
store, with an in-process runner stand-in that only reports which release
each replica runs (what `ps` reads); and a full slug store (ENOSPC) on a
real tiny tmpfs, with the fault injected once by a fake for a cloud store."""
from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

import attrs
import pytest

from controller.store import Store, open_controller
from core.settings import Settings
from storage.interface import SlugStoreFull
from storage.local import LocalSlugStore


@attrs.frozen
class Replica:
    version: int


class ReportingRunner:
    """Stands in for the runner's `replicas` only: which versions run."""

    def __init__(self) -> None:
        self.current: int | None = None
        self.stuck: set[int] = set()  # replicas of older releases still there

    def replicas(self, app: str) -> list[Replica]:
        versions = self.stuck | ({self.current} if self.current else set())
        return [Replica(v) for v in sorted(versions)]


class RecordingDeployer:
    def __init__(self, runner: ReportingRunner) -> None:
        self.runner = runner

    def deploy(self, app: Any, release: Any, output: Any, hot: bool = False) -> None:
        self.runner.current = release.version  # the new release replaces the old

    def refresh_route(self, app: Any) -> None:
        pass


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Store, LocalSlugStore, ReportingRunner, Any, Any]]:
    settings = Settings(data_dir=tmp_path / "data", slug_keep=2)
    store = open_controller(settings)
    slugs = LocalSlugStore(settings)
    runner = ReportingRunner()
    store.set_deployer(RecordingDeployer(runner))
    owner = store.signup("owner@example.com", "owner-password")[0]
    app = store.create_app(owner, "prune-app")
    yield store, slugs, runner, owner, app
    store.close()


def deploy(store: Store, slugs: LocalSlugStore, app: Any, owner: Any, n: int,
           tmp: Path) -> str:
    source = tmp / f"slug{n}"
    source.write_bytes(f"slug {n}".encode() * 100)
    key = f"{app.name}/{n:064x}.tar.gz"
    slugs.put(key, source)
    slug = store.record_slug(app, key, f"{n:064x}", 700, f"c{n}", {"web": "x"}, [])
    store.deploy_release(app, store.create_release(app, slug, f"Deploy {n}", owner.email))
    store.prune_slugs(app, slugs)
    return key


def test_keeps_the_last_n_and_the_running_ones(world, tmp_path: Path) -> None:
    store, slugs, runner, owner, app = world
    keys = [deploy(store, slugs, app, owner, n, tmp_path) for n in range(1, 5)]
    assert [slugs.exists(k) for k in keys] == [False, False, True, True]
    pruned = {r.version: r.slug_pruned for r in store.list_releases(owner, app.name)}
    assert pruned == {1: True, 2: True, 3: False, 4: False}

    # A replica still running v3 (say it did not stop) keeps v3's slug past
    # the last 2; the current release's is never pruned.
    runner.stuck = {3}
    keys.append(deploy(store, slugs, app, owner, 5, tmp_path))
    keys.append(deploy(store, slugs, app, owner, 6, tmp_path))
    assert [slugs.exists(k) for k in keys] == [False, False, True, False, True, True]

    with pytest.raises(Exception) as refused:
        store.rollback(owner, app.name, 1)
    assert "the slug of v1 was pruned" in str(refused.value)
    assert "keeps the slugs of the last 2 releases" in str(refused.value)


def test_pruning_an_s3_store(s3_endpoint: str, tmp_path: Path) -> None:
    """The same rule on the S3 backend (a real S3-compatible server, moto)."""
    import boto3

    from storage.s3 import S3SlugStore
    from tests.conftest import unique

    bucket = unique("bucket")
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                 aws_access_key_id="test", aws_secret_access_key="test").create_bucket(Bucket=bucket)
    settings = Settings(data_dir=tmp_path / "data", slug_keep=2, slug_store="s3",
                        s3_bucket=bucket, s3_endpoint_url=s3_endpoint,
                        s3_access_key_id="test", s3_secret_access_key="test")
    store = open_controller(settings)
    try:
        slugs = S3SlugStore(settings)
        runner = ReportingRunner()
        store.set_deployer(RecordingDeployer(runner))
        owner = store.signup("s3@example.com", "owner-password")[0]
        app = store.create_app(owner, "s3-app")
        keys = [deploy(store, slugs, app, owner, n, tmp_path) for n in range(1, 5)]
        assert [slugs.exists(k) for k in keys] == [False, False, True, True]
    finally:
        store.close()


def test_a_key_shared_by_a_kept_slug_stays(world, tmp_path: Path) -> None:
    """Slug keys are per content: a slug pushed again shares the file."""
    store, slugs, runner, owner, app = world
    key = deploy(store, slugs, app, owner, 1, tmp_path)
    deploy(store, slugs, app, owner, 2, tmp_path)
    deploy(store, slugs, app, owner, 3, tmp_path)
    again = deploy(store, slugs, app, owner, 1, tmp_path)  # same content as v1
    assert again == key and slugs.exists(key)
    store.prune_slugs(app, slugs)
    assert slugs.exists(key)


def test_nothing_pruned_when_what_runs_is_unknown(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", slug_keep=1)
    store = open_controller(settings)
    try:
        slugs = LocalSlugStore(settings)
        owner = store.signup("o@example.com", "owner-password")[0]
        app = store.create_app(owner, "no-runner")
        store.set_deployer(type("D", (), {"deploy": lambda *a, **k: None})())
        keys = [deploy(store, slugs, app, owner, n, tmp_path) for n in range(1, 4)]
        assert all(slugs.exists(k) for k in keys)
    finally:
        store.close()


# --- a full slug store -------------------------------------------------------------

@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB tmpfs (needs root; skipped otherwise)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_fails_cleanly_and_keeps_what_is_stored(tiny_fs: Path, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    slugs = LocalSlugStore(settings, root=tiny_fs)
    small, big = tmp_path / "small", tmp_path / "big"
    small.write_bytes(os.urandom(64 * 1024))
    big.write_bytes(os.urandom(512 * 1024))
    slugs.put("app/small.tar.gz", small)
    with pytest.raises(SlugStoreFull) as full:
        slugs.put("app/big.tar.gz", big)
    assert str(full.value) == "no space left on the server's slug store"
    assert isinstance(full.value.__cause__, OSError) and full.value.__cause__.errno == errno.ENOSPC
    # Nothing partial left, nothing stored lost, the store still works.
    assert sorted(p.name for p in (tiny_fs / "app").iterdir()) == ["small.tar.gz"]
    assert (tiny_fs / "app" / "small.tar.gz").read_bytes() == small.read_bytes()
    # Overwriting a stored key that no longer fits keeps the old file whole.
    with pytest.raises(SlugStoreFull):
        slugs.put("app/small.tar.gz", big)
    assert (tiny_fs / "app" / "small.tar.gz").read_bytes() == small.read_bytes()
    slugs.delete("app/small.tar.gz")
    slugs.put("app/big2.tar.gz", small)


def test_s3_full_service_is_reported_as_full(tmp_path: Path) -> None:
    """The fault a full MinIO answers, injected by a client that raises it."""
    from boto3.exceptions import S3UploadFailedError

    from storage.s3 import S3SlugStore

    class FullClient:
        def upload_file(self, *args: Any) -> None:
            raise S3UploadFailedError(
                "Failed to upload: An error occurred (XMinioStorageFull) when calling the "
                "PutObject operation: Storage backend has reached its minimum free drive "
                "threshold.")

    store = S3SlugStore(Settings(data_dir=tmp_path, slug_store="s3", s3_bucket="b"),
                        client=FullClient())
    source = tmp_path / "s"
    source.write_bytes(b"x")
    with pytest.raises(SlugStoreFull):
        store.put("app/x.tar.gz", source)
