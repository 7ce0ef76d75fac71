"""Finding 5 of issue 14, the containers' half: a replica wrote 1.5 GB into
its layer unchecked, unpacked slugs had no limit, builds wrote to the host's
disk at will.

Against a real server: a replica that writes 1.5 GB stops at its limit with
ENOSPC (a read-only root, fixed-size tmpfs) while its container layer on
the host's disk stays empty; a slug that unpacks past SHIPWAY_RUN_DISK (by its recorded
size, or by many tiny files that only the unpack finds too big) fails its
deploy clearly while the previous release keeps answering; a build that
writes past SHIPWAY_BUILD_DISK fails clearly, its disk image never taking
more of the host's disk than that.

What reached the host's disk is read from the container's own layer and
the build's own disk image, never from the host's free space, which other
processes move at the same time."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import docker
import pytest

from tests.e2e.helpers import fetch, new_app

pytestmark = [pytest.mark.slow, pytest.mark.docker]

MB = 1024 * 1024


def _replica(server, app: str):
    client = docker.from_env()
    [container] = client.containers.list(filters={"label": [
        f"shipway.instance={server.instance}", "shipway.role=run", f"shipway.app={app}"]})
    return container


def _layer_bytes(container) -> int:
    """What the container wrote to its copy-on-write layer on the host's disk."""
    said = subprocess.run(["docker", "inspect", "--size", "--format", "{{.SizeRw}}", container.id],
                          capture_output=True, text=True, check=True).stdout.strip()
    return int(said or 0)


def test_a_replica_stops_at_its_disk_limit(make_server, tmp_path) -> None:
    server = make_server(env={"SHIPWAY_STOP_GRACE": "2"})  # SHIPWAY_RUN_DISK: 1g
    user, app = new_app(server, tmp_path / "home", "procfile", "dd")
    user.push()
    replica = _replica(server, app)
    layer = _layer_bytes(replica)
    written = 0
    for path in ("/tmp/fill", "/app/fill", "/fill", "/home/fill", "/shipway-in/fill"):
        result = replica.exec_run(
            ["bash", "-c", f"dd if=/dev/zero of={path} bs=1M count=1536 2>&1; "
                           f"stat -c %s {path} 2>/dev/null || echo 0"], user="1000:1000")
        said = result.output.decode()
        assert "No space left on device" in said or "Read-only file system" in said or \
            "Permission denied" in said, said
        written += int(said.split()[-1])
    assert written <= 1024 * MB  # SHIPWAY_RUN_DISK for all its paths together
    assert _layer_bytes(replica) - layer < 1 * MB  # none of it on the host's disk
    # and no volume it may write to: its one volume is read-only to it
    assert [m["Destination"] for m in replica.attrs["Mounts"]] == ["/shipway-in"]
    replica.exec_run(["rm", "-f", "/tmp/fill", "/app/fill"], user="1000:1000")
    assert fetch(server, app).status_code == 200  # its own problem, and it still serves


def test_a_slug_that_unpacks_past_the_run_disk_fails_the_deploy(make_server, tmp_path) -> None:
    # 128m in all: 88 MB for /app.
    server = make_server(env={"SHIPWAY_STOP_GRACE": "2", "SHIPWAY_RUN_DISK": "128m"})
    user, app = new_app(server, tmp_path / "home", "procfile", "big",
                        env={"HEALTHCHECK_TIMEOUT": "30"})
    user.push()
    assert "(release v1)" in fetch(server, app).text

    # Zeros: a push and a slug of a few hundred KB that unpack to 150 MB.
    with open(user.src / "zeros.bin", "wb") as f:
        f.truncate(150 * MB)
    user.commit("150 MB of zeros")
    push = user.push(check=False)
    assert push.returncode != 0
    assert "slug unpacks to more than 88 MB" in push.stderr
    assert "(release v1)" in fetch(server, app).text

    # Tiny files: recorded as ~30 MB of tar, but each takes a 4 KiB page in
    # the tmpfs: only the unpack itself finds it too big, and stops there.
    (user.src / "zeros.bin").unlink()
    many = user.src / "many"
    for d in range(30):
        (many / str(d)).mkdir(parents=True)
        for i in range(1000):
            (many / str(d) / str(i)).write_text("x")
    user.commit("30000 tiny files")
    push = user.push(check=False)
    assert push.returncode != 0
    assert "slug unpacks to more than" in push.stderr
    assert "(release v1)" in fetch(server, app).text


def test_a_build_that_writes_past_its_disk_fails(make_server, tmp_path) -> None:
    # 256m in all: 64 MB of /tmp, 192 MB for the source, /app and the cache.
    server = make_server(env={"SHIPWAY_BUILD_DISK": "256m"})
    user, app = new_app(server, tmp_path / "home", "procfile", "bdd")
    (user.src / "package.json").write_text(json.dumps({
        "name": "filler", "version": "1.0.0",
        "scripts": {"postinstall": "dd if=/dev/zero of=/tmp/fill bs=1M count=100; "
                                   "dd if=/dev/zero of=fill bs=1M count=400"}}))
    user.commit("a build that writes 500 MB")
    push = user.push(check=False)
    assert push.returncode != 0
    assert "the build ran out of disk: a build may write at most 256m" in push.stderr
    # It wrote into the app's build disk image, which holds at most its size
    # of the host's disk (192 MB, /tmp being a tmpfs), not into a volume's
    # plain directory.
    [image] = Path(server.data_dir, "build-disks").glob(f"*-{app}.img")
    assert os.stat(image).st_blocks * 512 <= 192 * MB
    volumes = docker.from_env().volumes.list(filters={"label": [
        f"shipway.instance={server.instance}", f"shipway.app={app}"]})
    assert volumes and all(v.attrs["Options"]["device"].startswith("/dev/loop") for v in volumes)
