"""`ps:scale --size`: each replica's memory and CPU limits per app, changed
through the deploy path (fresh replicas, health-checked, zero downtime), and
a size the app cannot boot in refused with the old replicas serving on."""
from __future__ import annotations

import docker
import pytest

from tests.e2e.helpers import Prober, User, fetch, new_app

pytestmark = [pytest.mark.slow, pytest.mark.docker]

MIB = 1024 * 1024


def _web(user: User, app: str) -> list[dict]:
    data = user.shipway_json("-a", app, "ps")
    return [r for r in data["replicas"] if r["state"] == "running" and r["process_type"] == "web"]


def _limits(container_id: str) -> tuple[int, int, int]:
    """The container's memory limit, its CPUs in nano-CPUs, and the sizes of
    its in-memory disk (every tmpfs: /workspace, /tmp, /shipway) added up:
    the limit is the replica's size plus that disk (SHIPWAY_RUN_DISK), whose
    pages the memory cgroup is charged for (runner/run_disk.py)."""
    host = docker.from_env().containers.get(container_id).attrs["HostConfig"]
    sizes = [int(opt[5:]) for options in (host.get("Tmpfs") or {}).values()
             for opt in options.split(",") if opt.startswith("size=")]
    return host["Memory"], host["NanoCpus"], sum(sizes)


def test_replica_size_is_applied_and_a_size_too_small_is_refused(make_server, tmp_path) -> None:
    # A small run disk (64 MiB, on top of the size's memory), so that the
    # size is what decides whether v2's 200 MiB fit below.
    server = make_server(env={"SHIPWAY_STOP_GRACE": "2", "SHIPWAY_RUN_MEMORY": "384m",
                              "SHIPWAY_RUN_CPUS": "0.5", "SHIPWAY_RUN_DISK": "64m"})
    user, app = new_app(server, tmp_path / "home", "procfile", "size",
                        env={"HEALTHCHECK_TIMEOUT": "20"})
    user.push()
    [first] = _web(user, app)
    memory, cpus, tmpfs = _limits(first["container_id"])
    assert tmpfs == 64 * MIB  # SHIPWAY_RUN_DISK
    assert (memory - tmpfs, cpus) == (384 * MIB, 500_000_000)  # the server's defaults

    # A quarter: new replicas with 256 MiB and a quarter of a CPU, no request lost.
    with Prober(server, app) as probe:
        user.shipway("-a", app, "ps:scale", "--size", "0.25")
    assert probe.sent > 0 and probe.failures == []
    [resized] = _web(user, app)
    assert resized["container_id"] != first["container_id"] and resized["version"] == 1
    memory, cpus, tmpfs = _limits(resized["container_id"])
    assert (memory - tmpfs, cpus) == (256 * MIB, 250_000_000)
    assert fetch(server, app).status_code == 200

    # v2 touches 200 MiB before it serves: it fits in a quarter...
    procfile = user.src / "Procfile"
    procfile.write_text("web: python3 -c 'b = b\"x\" * (200 << 20)' && python3 serve.py\n")
    user.commit("v2 needs 200 MiB at boot")
    assert "Released v2" in user.push().stderr
    [serving] = _web(user, app)
    memory, cpus, tmpfs = _limits(serving["container_id"])
    assert (memory - tmpfs, cpus) == (256 * MIB, 250_000_000)

    # ...not in a tenth (102 MiB, 166 with the disk): refused, the size stays a quarter, v2's replica serves on.
    with Prober(server, app) as probe:
        failed = user.shipway("-a", app, "ps:scale", "--size", "0.1", check=False)
    assert failed.returncode != 0 and "failed to start" in failed.stderr, failed.stderr
    assert "out of memory" in failed.stderr
    assert probe.sent > 0 and probe.failures == []
    data = user.shipway_json("-a", app, "ps")
    assert data["replica_size"] == {"size": 0.25, "memory_mb": 256, "cpus": 0.25}
    assert [r["container_id"] for r in _web(user, app)] == [serving["container_id"]]
    r = fetch(server, app)
    assert r.status_code == 200 and "(release v2)" in r.text

    # Back to the server's defaults.
    user.shipway("-a", app, "ps:scale", "--size", "default")
    [back] = _web(user, app)
    memory, cpus, tmpfs = _limits(back["container_id"])
    assert (memory - tmpfs, cpus) == (384 * MIB, 500_000_000)
