"""The runner contract: it knows releases and replicas, not git or users."""
from __future__ import annotations

from zope.interface import Interface

from core.output import Output
from core.specs import HealthCheck, ReleaseSpec, ReplicaState

__all__ = ["HealthCheck", "IDesiredState", "IRunner", "Output", "ReleaseSpec", "ReplicaState"]


class IDesiredState(Interface):
    """What should run, as the controller knows it: supervision reads it to
    adopt, repair and remove replicas, and routing to learn an app's names.
    The controller implements it (controller/deploys.py); the runner never
    sees apps, users or database rows."""

    def app_names() -> set[str]:
        """The names of every app that exists now."""

    def exists(app: str) -> bool:
        """Whether the app exists now."""

    def current_spec(app: str) -> ReleaseSpec | None:
        """The spec of the app's live release, None before its first
        deploy. Raises core.errors.NotFound when the app is gone."""

    def hostnames(app: str) -> list[str] | None:
        """The names the app answers to now, None when the app is gone."""


class IRunner(Interface):
    def deploy(spec: ReleaseSpec, output: Output) -> None:
        """Zero-downtime switch to `spec`: start new replicas, wait for health,
        route to them, stop the old ones. On failure leave the old replicas
        serving and raise runner.errors.DeployFailed with log lines."""

    def hot_upgrade(spec: ReleaseSpec, output: Output) -> bool:
        """Upgrade the running replicas to `spec` without restarting them
        (same state, same connections); when that is not possible, the same
        as `deploy`. Raises DeployFailed as `deploy` does. True when the
        replicas were upgraded in place, False when they were restarted
        (`releases` marks the hot ones)."""

    def scale(spec: ReleaseSpec, output: Output) -> None:
        """Apply `spec.formation` to the running release `spec`: start missing
        replicas (health-checked, then routed), unroute then stop extra ones;
        replicas that stay are untouched. A different release is deployed."""

    def refresh_route(app: str) -> None:
        """Re-render the app's route (its domains changed)."""

    def replicas(app: str) -> list[ReplicaState]:
        """The app's replicas as Docker sees them now."""

    def serving_version(app: str) -> int | None:
        """The release whose replicas run and are routed now, read from
        what runs (also before `start`: settling a release a crash left
        deploying); None when none is, or it is not one release."""

    def ssh_endpoint(app: str, replica: str | None) -> tuple[str, int]:
        """Where the SSH server of the app's running replica listens (the
        replica whose container id starts with `replica`, else the first web
        one, else any): (host, port). LookupError when there is none."""

    # --- issue 18: one-off containers (runner/oneoff.py) ---------------------
    def run_oneoff(spec: ReleaseSpec, command: str, output: Output, timeout: float,
                   kind: str = "run", detach: bool = False) -> int:
        """Run `command` in a one-off container of `spec` (its image, slug,
        env and limits; no replica, no route), stream its lines to `output`
        and return its exit status once it is removed; stopped at `timeout`
        seconds (status 124, saying so). `detach`: return 0 at once, the
        lines go to `output` as they come. `kind` names it ("release",
        "run", "migrate"). Starting it may raise (no image, no Docker)."""

    def oneoffs(app: str) -> list[ReplicaState]:
        """The app's one-offs running now (for `ps`)."""

    def oneoff_shell(spec: ReleaseSpec, timeout: float) -> str:
        """A one-off of `spec` for a terminal session (`shipway run` from a
        TTY): idle with its SSH server up, reached by ps:ssh's path with its
        container id; removed by `stop_oneoff` or after `timeout`. Its id."""

    def stop_oneoff(app: str, container_id: str) -> bool:
        """Remove the app's one-off `container_id`; False when there is none."""

    def destroy(app: str) -> None:
        """Stop and remove all of the app's containers and routes."""

    def start() -> None:
        """Adopt running containers and start supervision."""

    def stop() -> None:
        """Stop supervision (containers keep running)."""
