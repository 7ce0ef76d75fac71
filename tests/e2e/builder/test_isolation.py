"""Proved from inside the build container: no capabilities, no Docker
socket, no host files, only the app's own cache; the cache persists and the
clean flag empties it."""
from __future__ import annotations

from pathlib import Path

from builder import build_disk
from tests.builder.helpers import make_app, slug_file
from tests.conftest import ROOT

PROBE = r"""#!/bin/bash
set -e
out="$1/probe"
mkdir -p "$out"
grep CapEff /proc/self/status | awk '{print $2}' > "$out/capeff"
grep NoNewPrivs /proc/self/status | awk '{print $2}' > "$out/nonewprivs"
id -u > "$out/uid"
hostname > "$out/hostname"
found=""
for s in /var/run/docker.sock /run/docker.sock /run/containerd/containerd.sock; do
  [ -e "$s" ] && found="$found $s"
done
echo "sockets:$found" > "$out/sockets"
ls -A "$2" | sort > "$out/cache-before"
echo "$SHIPWAY_APP_MARK" > "$2/mark-$(cat "$3/MARK")"
( find / -xdev -name "$(cat "$3/HOSTMARK")" 2>/dev/null || true ) > "$out/host-find"
cat /proc/self/mountinfo | awk '{print $5}' > "$out/mounts"
# mount point, the path of the source filesystem it shows, type, source
awk '{for (i = 7; $i != "-"; i++); print $5, $4, $(i + 1), $(i + 2)}' /proc/self/mountinfo \
  > "$out/mount-details"
echo "probe ran"
"""


def _probe_app(tmp_path: Path, name: str) -> tuple[Path, str]:
    return make_app(tmp_path, {".buildpacks": "./probe\n", "probe/bin/detect": "#!/bin/sh\necho Probe\n",
                               "probe/bin/compile": PROBE}, name=name)


def test_build_container_is_confined(tmp_path: Path, builder, run_build) -> None:
    import docker

    host_marker = f"host-only-{tmp_path.name}"
    (tmp_path / host_marker).write_text("the build must not see this")
    repo_a, sha_a = _probe_app(tmp_path, "a")
    repo_b, sha_b = _probe_app(tmp_path, "b")
    a1, out = run_build(repo_a, sha_a, app="appa", env={"MARK": "a1", "HOSTMARK": host_marker})
    assert "probe ran" in out.lines
    assert slug_file(a1.slug_path, "probe/capeff").strip() == "0000000000000000"
    assert slug_file(a1.slug_path, "probe/nonewprivs").strip() == "1"
    assert slug_file(a1.slug_path, "probe/uid").strip() == "1000"
    assert slug_file(a1.slug_path, "probe/sockets").strip() == "sockets:"
    assert slug_file(a1.slug_path, "probe/host-find").strip() == ""
    # Nothing of the host (this checkout, the home directory or any folder
    # they live in, the Docker socket) is visible: no mount shows a part of
    # them (a bind mount's root is the host path it shows), nor sits where
    # they are. Mount points such as /tmp may share a name with a host
    # folder (a checkout under /tmp) without showing any of it.
    details = [line.split() for line in
               slug_file(a1.slug_path, "probe/mount-details").splitlines()]
    by_point = {d[0]: d for d in details}
    host_dirs = {str(ROOT), str(Path.home()), *(str(p) for p in ROOT.parents if p != Path("/"))}
    for point, root, _fstype, _source in details:
        assert not (root in host_dirs or root.startswith(tuple(d + "/" for d in host_dirs))), root
        assert not (point in {str(ROOT), str(Path.home())} or point.startswith(
            ("/var/run/docker", "/run/docker", str(ROOT) + "/", str(Path.home()) + "/"))), point
    # The workspace is the app's own build disk: an ext4 image on a loop
    # device (builder/build_disk.py) where the server can make one, else its
    # Docker volume; /tmp is a tmpfs.
    assert "/workspace" in by_point and by_point["/tmp"][2] == "tmpfs"
    if build_disk.usable(builder.settings):
        assert by_point["/workspace"][2] == "ext4"
        assert by_point["/workspace"][3].startswith("/dev/loop")
    # the cache persists for the same app ...
    builder.wait_for_cleanup("appa")
    [standby] = docker.from_env().containers.list(filters={"label": [
        f"shipway.instance={builder.settings.instance}", "shipway.app=appa"]})
    a2, _ = run_build(repo_a, sha_a, app="appa", env={"MARK": "a2", "HOSTMARK": host_marker})
    assert slug_file(a2.slug_path, "probe/cache-before").split() == ["mark-a1"]
    # ... in the standby container a1's build left (test_standby), which is
    # confined just the same
    assert slug_file(a2.slug_path, "probe/hostname").strip() == standby.id[:12]
    # Docker mounts nothing of the host into it: only the app's build volume.
    assert [(m["Type"], m["Destination"]) for m in standby.attrs["Mounts"]] == \
        [("volume", "/workspace")]
    for probe in ("capeff", "nonewprivs", "uid", "sockets", "host-find", "mounts"):
        assert slug_file(a2.slug_path, f"probe/{probe}") == slug_file(a1.slug_path, f"probe/{probe}")
    # ... another app sees none of it ...
    b1, _ = run_build(repo_b, sha_b, app="appb", env={"MARK": "b1", "HOSTMARK": host_marker})
    assert slug_file(b1.slug_path, "probe/cache-before").split() == []
    # ... and the clean flag empties it first
    a3, out = run_build(repo_a, sha_a, app="appa", env={"MARK": "a3", "HOSTMARK": host_marker},
                        clean=True)
    assert slug_file(a3.slug_path, "probe/cache-before").split() == []
    assert "-----> Clearing the build cache" in out.lines


def test_cache_volume_is_labelled_and_removed(tmp_path: Path, builder, run_build) -> None:
    import docker

    repo, sha = _probe_app(tmp_path, "c")
    run_build(repo, sha, app="appc", env={"MARK": "c", "HOSTMARK": "none"})
    client = docker.from_env()
    vol = client.volumes.get(builder.build_volume_name("appc"))
    assert vol.attrs["Labels"]["shipway.instance"] == builder.settings.instance
    assert vol.attrs["Labels"]["shipway.app"] == "appc"
    builder.remove_cache("appc")  # waits for the container's removal
    assert not client.volumes.list(filters={"name": builder.build_volume_name("appc")})
    # no build container is left behind
    assert not client.containers.list(
        all=True, filters={"label": f"shipway.instance={builder.settings.instance}"})


def test_build_network_off(tmp_path: Path, make_builder, run_build) -> None:
    builder = make_builder(build_network=False)
    repo, sha = make_app(tmp_path, {".buildpacks": "./p\n", "p/bin/detect": "#!/bin/sh\necho P\n",
                                    "p/bin/compile": "#!/bin/sh\nls /sys/class/net > \"$1/nets\"\n"})
    result, _ = run_build(repo, sha, using=builder)
    assert slug_file(result.slug_path, "nets").split() == ["lo"]
    on, _ = run_build(repo, sha, app="other")  # the default: networking on, like Heroku
    assert "eth0" in slug_file(on.slug_path, "nets").split()
