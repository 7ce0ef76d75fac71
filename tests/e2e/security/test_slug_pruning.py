"""Issue 14, finding 5 (disk): slugs were never pruned, and a full disk was
not a clear failure. Against a real `shipway server`, real git and Docker,
the procfile example: with SHIPWAY_SLUG_KEEP=2 the oldest slugs leave the
store, a rollback to one is refused; a slug store without room (a real tiny
tmpfs mounted over the data dir's slugs/) rejects the push with a clear
error and loses nothing already stored."""
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import ShipwayServer, _stop_nginx
from tests.e2e.helpers import fetch, new_app, wait_for

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(autouse=True)
def _stack(stack_image: str) -> None:
    """The stack image (built once per session by the fixture)."""


def push_version(user, n: int) -> subprocess.CompletedProcess:
    (user.src / "VERSION").write_text(f"{n}\n")  # a new slug each time
    user.commit(f"version {n}")
    return user.push(check=False)


def stored_slugs(server: ShipwayServer, app: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (server.data_dir / "slugs" / app).iterdir()}


def test_old_slugs_are_pruned_and_rollback_to_them_is_refused(make_server,
                                                              tmp_path: Path) -> None:
    server = make_server(env={"SHIPWAY_SLUG_KEEP": "2"})
    user, app = new_app(server, tmp_path / "home", "procfile", "prune")
    pushes = [push_version(user, n) for n in range(1, 5)]
    assert all(p.returncode == 0 for p in pushes), [p.stderr for p in pushes]
    assert "Pruned 1 old slug(s)" in pushes[2].stderr

    releases = {r["version"]: r for r in user.shipway_json("releases", "-a", app)}
    assert sorted(releases) == [1, 2, 3, 4]
    assert [releases[v]["slug_pruned"] for v in (1, 2, 3, 4)] == [True, True, False, False]
    files = stored_slugs(server, app)
    assert len(files) == 2, sorted(files)  # v3's and v4's (the running one)
    for name, data in files.items():  # whole slugs, named by their content
        assert name == hashlib.sha256(data).hexdigest() + ".tar.gz"
    running = {r["version"] for r in user.shipway_json("ps", "-a", app)["replicas"]}
    assert running == {4}

    refused = user.shipway("releases:rollback", "1", "-a", app, check=False)
    assert refused.returncode != 0
    assert "the slug of v1 was pruned" in refused.stderr + refused.stdout
    assert fetch(server, app).status_code == 200  # v4 still serves

    # A rollback to a kept release works, and the slug it runs stays.
    user.shipway("releases:rollback", "3", "-a", app)
    assert len(stored_slugs(server, app)) == 2


@pytest.fixture
def tiny_slug_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShipwayServer]:
    """A server whose slug store is a real 2 MiB tmpfs (root only)."""
    server = ShipwayServer(tmp_path_factory.mktemp("shipway-full"))
    slugs = server.data_dir / "slugs"
    slugs.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(slugs)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield server.start()
    finally:
        server.stop()
        server.cleanup_docker()
        _stop_nginx(server.data_dir)
        subprocess.run(["umount", "-l", str(slugs)], check=False)


def test_a_full_slug_store_rejects_the_push_and_loses_nothing(tiny_slug_store: ShipwayServer,
                                                              tmp_path: Path) -> None:
    server = tiny_slug_store
    user, app = new_app(server, tmp_path / "home", "procfile", "full")
    assert push_version(user, 1).returncode == 0
    before = stored_slugs(server, app)
    assert len(before) == 1
    deployed = user.remote_head()

    # Fill the store to its last few KiB: the next slug cannot fit.
    filler = server.data_dir / "slugs" / "filler"
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError:
            pass
    (user.src / "big.bin").write_bytes(os.urandom(256 * 1024))
    rejected = push_version(user, 2)
    assert rejected.returncode != 0
    assert "no space left on the server's slug store" in rejected.stderr
    assert "internal error" not in rejected.stderr
    assert user.remote_head() == deployed  # the branch did not move

    # Nothing stored was lost or left half-written, and v1 still serves.
    assert stored_slugs(server, app) == before
    leftovers = [p.name for p in (server.data_dir / "slugs").rglob(".*")]
    assert leftovers == []
    assert wait_for(lambda: fetch(server, app).status_code == 200, timeout=30)
    builds = user.shipway_json("releases", "-a", app)
    assert [r["version"] for r in builds] == [1]

    # Once there is room again, the same push goes through.
    filler.unlink()
    assert user.push(check=False).returncode == 0
