"""The runner contract: it knows releases and replicas, not git or users."""
from __future__ import annotations

import datetime as dt
from typing import Callable

import attrs
from zope.interface import Interface

Output = Callable[[str], None]


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
    # runs the server's defaults. See runner.containers.replica_limits.
    size: float | None = None


@attrs.frozen
class ReplicaState:
    app: str
    version: int
    process_type: str
    container_id: str
    state: str  # "starting", "running", "exited", ...
    host_port: int | None  # web replicas: the 127.0.0.1 port
    started_at: dt.datetime | None


class IRunner(Interface):
    def deploy(spec: ReleaseSpec, output: Output) -> None:
        """Zero-downtime switch to `spec`: start new replicas, wait for health,
        route to them, stop the old ones. On failure leave the old replicas
        serving and raise controller.errors.DeployFailed with log lines."""

    def hot_upgrade(spec: ReleaseSpec, output: Output) -> None:
        """Upgrade the running replicas to `spec` without restarting them
        (same state, same connections); when that is not possible, the same
        as `deploy`. Raises DeployFailed as `deploy` does."""

    def scale(spec: ReleaseSpec, output: Output) -> None:
        """Apply `spec.formation` to the running release `spec`: start missing
        replicas (health-checked, then routed), unroute then stop extra ones;
        replicas that stay are untouched. A different release is deployed."""

    def refresh_route(app: str) -> None:
        """Re-render the app's route (its domains changed)."""

    def replicas(app: str) -> list[ReplicaState]:
        """The app's replicas as Docker sees them now."""

    def ssh_endpoint(app: str, replica: str | None) -> tuple[str, int]:
        """Where the SSH server of the app's running replica listens (the
        replica whose container id starts with `replica`, else the first web
        one, else any): (host, port). LookupError when there is none."""

    def destroy(app: str) -> None:
        """Stop and remove all of the app's containers and routes."""

    def start() -> None:
        """Adopt running containers and start supervision."""

    def stop() -> None:
        """Stop supervision (containers keep running)."""
