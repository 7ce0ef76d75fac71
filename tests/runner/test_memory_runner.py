"""The in-memory runner keeps the Docker runner's contract where the fast
tests rely on it: the interfaces, zero-downtime switch, scale keeping the
replicas that stay, hot upgrade in place, adoption at start."""
from __future__ import annotations

import pytest
from zope.interface.verify import verifyObject

from builder.interface import IBuilder
from builder.memory import MemoryBuilder
from core.settings import Settings
from core.specs import ReleaseSpec
from runner.errors import DeployFailed
from runner.interface import IRunner
from runner.memory import MemoryRunner


def spec(version: int, web: int = 1, worker: int = 0, env: dict | None = None) -> ReleaseSpec:
    return ReleaseSpec(app="a", version=version, slug_key=f"a/{version}.tgz",
                       process_types={"web": "w", "worker": "k"}, env=env or {"X": "1"},
                       formation={"web": web, "worker": worker}, hostnames=("a.localhost",))


class State:
    """What the controller would answer (the desired state a restart reads)."""

    def __init__(self) -> None:
        self.current: ReleaseSpec | None = None

    def app_names(self) -> set[str]:
        return {"a"}

    def exists(self, app: str) -> bool:
        return True

    def current_spec(self, app: str) -> ReleaseSpec | None:
        return self.current

    def hostnames(self, app: str) -> list[str]:
        return ["a.localhost"]


def ids(runner: MemoryRunner) -> set[str]:
    return {r.container_id for r in runner.replicas("a")}


def test_it_implements_the_interfaces(tmp_path) -> None:
    assert verifyObject(IRunner, MemoryRunner())
    assert verifyObject(IBuilder, MemoryBuilder(Settings(data_dir=tmp_path)))


def test_deploy_switches_and_a_failed_one_leaves_the_old_serving() -> None:
    runner, lines = MemoryRunner(), []
    runner.deploy(spec(1, web=2), lines.append)
    first = ids(runner)
    assert len(first) == 2 and runner.serving_version("a") == 1
    runner.fail_next("a", "boom")
    with pytest.raises(DeployFailed, match="boom"):
        runner.deploy(spec(2, web=2), lines.append)
    assert ids(runner) == first and runner.serving_version("a") == 1
    runner.deploy(spec(2, web=2), lines.append)
    assert not ids(runner) & first and runner.serving_version("a") == 2
    assert "-----> Stopping 2 old replica(s)" in lines


def test_scale_keeps_the_replicas_that_stay_and_hot_upgrade_restarts_none() -> None:
    runner = MemoryRunner()
    runner.deploy(spec(1, web=2), lambda _l: None)
    before = ids(runner)
    runner.scale(spec(1, web=3, worker=1), lambda _l: None)
    assert before < ids(runner) and len(ids(runner)) == 4
    runner.scale(spec(1, web=1), lambda _l: None)
    assert len(ids(runner)) == 1 and ids(runner) < before
    kept = ids(runner)
    runner.hot_upgrade(spec(2, web=1), lambda _l: None)
    assert ids(runner) == kept and runner.serving_version("a") == 2
    runner.hot_upgrade(spec(3, web=1, env={"X": "2"}), lambda _l: None)  # config changed
    assert not ids(runner) & kept and runner.serving_version("a") == 3


def test_start_adopts_the_current_release_and_drops_the_others() -> None:
    state = State()
    runner = MemoryRunner(state=state)
    runner.deploy(spec(1), lambda _l: None)
    kept = ids(runner)
    state.current = spec(1)
    runner.start()
    assert ids(runner) == kept and runner.routes["a"].upstreams
    state.current = None  # e.g. the release was settled failed
    runner.start()
    assert ids(runner) == set() and runner.routes["a"].upstreams == []
