"""Value objects the controller and the runtime parts exchange: what a
release needs to run (a plain spec, no database rows), what a replica is
doing, and how big a replica is."""
from __future__ import annotations

import datetime as dt

import attrs

from core.settings import Settings, docker_bytes


@attrs.frozen
class HealthCheck:
    path: str = "/"
    timeout: int = 60  # seconds for a replica to answer after start
    interval: float = 0.5
    # Error answers (5xx) after which a replica fails at once, each followed
    # by a wait (runner.containers.ERROR_WAIT); 0: only the timeout decides.
    attempts: int = 0


@attrs.frozen
class ReleaseSpec:
    """Everything needed to run one release of one app."""

    app: str
    version: int
    slug_key: str
    process_types: dict[str, str]
    env: dict[str, str]
    formation: dict[str, int]
    health: HealthCheck = HealthCheck()
    slug_size: int | None = None  # compressed bytes
    slug_unpacked_size: int | None = None  # the tar's bytes, None if unknown
    # Each replica's size (ps:scale --size): GiB of memory and CPUs; None
    # runs the server's defaults. See size_limits.
    size: float | None = None
    # The names the app answers to when the spec is made (APP.<base domain>
    # and its custom domains). Domains change between deploys: a runner that
    # routes reads them fresh from its desired state (runner.interface).
    hostnames: tuple[str, ...] = ()


@attrs.frozen
class ReplicaState:
    app: str
    version: int
    process_type: str
    container_id: str
    state: str  # "starting", "running", "exited", ...
    host_port: int | None  # web replicas: the 127.0.0.1 port
    started_at: dt.datetime | None


def size_limits(settings: Settings, size: float | None,
                host_cpus: int) -> tuple[int, float]:
    """A replica's memory limit in bytes (0: none) and its CPUs: size S is
    S GiB and S CPUs, as Gigalixir sizes replicas; None is the server's
    run_memory and run_cpus. Docker refuses a CPU limit above the host's
    CPUs, so a bigger size gets all of them."""
    if size is None:
        memory, cpus = docker_bytes(settings.run_memory), settings.run_cpus
    else:
        memory, cpus = int(round(size * 1024)) * 1024 * 1024, size
    return memory, min(cpus, float(max(1, host_cpus)))
