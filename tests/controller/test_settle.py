"""A release a crash left `deploying` is settled at the next start: succeeded
when its replicas are the ones routed, failed otherwise; either way what
serves is adopted and keeps serving. The runner is the in-memory one (its
injected crash stops a deploy dead at a step, as kill -9 would), the
controller and database are real, and the "restart" reopens the store."""
from __future__ import annotations

from typing import Callable

import pytest

from controller.deploys import DesiredState, Deployer, release_spec
from controller.models import App, User
from controller.settle import interrupted_deploys, settle
from controller.store import Store
from core.output import quiet
from runner.memory import Crashed, MemoryRunner


def _live(store: Store, owner: User, app: App) -> tuple[MemoryRunner, int]:
    """The app with v1 deployed through the real Deployer, and v2 cut off
    mid-deploy by the caller."""
    runner = MemoryRunner(state=DesiredState(store.settings, store))
    store.set_deployer(Deployer(store.settings, controller=store, runner=runner))
    slug = store.record_slug(app, f"{app.name}/a.tgz", "a" * 64, 100, "c0ffee",
                             {"web": "python app.py"}, ["python"])
    store.deploy_release(app, store.create_release(app, slug, "v1", owner.email))
    return runner, slug.id


def _crash_mid_deploy(store: Store, owner: User, app: App, runner: MemoryRunner,
                      step: str) -> int:
    slug = store.get_slug(store.current_release(app).slug_id)
    v2 = store.create_release(app, slug, "v2", owner.email)
    v2 = store._set_status(v2, "deploying")  # what deploy_release does first
    runner.crash_at(app.name, step)
    with pytest.raises(Crashed):  # the server dies here: nothing marks v2
        runner.deploy(release_spec(store.settings, store, app, v2), quiet)
    return v2.version


def _restart(open_store: Callable[..., Store], runner: MemoryRunner) -> Store:
    """A new process: the store reopened, the runner (whose replicas
    outlived the server, as containers do) asked before it adopts."""
    store = open_store()
    runner.state = DesiredState(store.settings, store)
    found = interrupted_deploys(store)
    settle(store, found, runner.serving_version)
    runner.start()
    return store


def _statuses(store: Store, owner: User, app: App) -> dict[int, str]:
    return {r.version: r.status for r in store.list_releases(owner, app.name)}


def test_a_release_whose_replicas_serve_is_settled_succeeded_and_stays(
        open_store, store: Store, owner: User, app: App) -> None:
    runner, _ = _live(store, owner, app)
    v2 = _crash_mid_deploy(store, owner, app, runner, "routed")
    assert runner.serving_version(app.name) == v2
    routed = runner.routes[app.name].upstreams
    store = _restart(open_store, runner)
    assert _statuses(store, owner, app) == {1: "succeeded", v2: "succeeded"}
    assert store.current_release(app).version == v2
    # Adopted, not replaced: the same replicas serve on.
    assert {r.version for r in runner.replicas(app.name)} == {v2}
    assert runner.routes[app.name].upstreams == routed
    assert runner.serving_version(app.name) == v2


def test_a_release_cut_off_before_it_was_routed_fails_and_the_previous_serves(
        open_store, store: Store, owner: User, app: App) -> None:
    runner, _ = _live(store, owner, app)
    routed = runner.routes[app.name].upstreams
    v2 = _crash_mid_deploy(store, owner, app, runner, "started")
    assert runner.serving_version(app.name) == 1
    store = _restart(open_store, runner)
    assert _statuses(store, owner, app) == {1: "succeeded", v2: "failed"}
    assert store.current_release(app).version == 1
    assert {r.version for r in runner.replicas(app.name)} == {1}
    assert runner.routes[app.name].upstreams == routed


def test_when_the_runner_cannot_tell_the_release_fails(
        open_store, store: Store, owner: User, app: App) -> None:
    runner, _ = _live(store, owner, app)
    v2 = _crash_mid_deploy(store, owner, app, runner, "routed")
    restarted = open_store()

    def unreachable(_app: str) -> int | None:
        raise ConnectionError("the engine is down")

    assert settle(restarted, interrupted_deploys(restarted), unreachable) == \
        {(app.name, v2): "failed"}
    assert interrupted_deploys(restarted) == []  # settled once


def test_pending_releases_and_running_builds_fail_at_once_deploying_ones_wait(
        open_store, store: Store, owner: User, app: App) -> None:
    runner, _ = _live(store, owner, app)
    build = store.start_build(app, owner, "refs/heads/main", "cut")
    v2 = _crash_mid_deploy(store, owner, app, runner, "started")
    pending = store.create_release(app, None, "config", owner.email)
    restarted = open_store()
    found = interrupted_deploys(restarted)
    assert [(i.app, i.version) for i in found] == [(app.name, v2)]
    assert _statuses(restarted, owner, app) == {1: "succeeded", v2: "deploying",
                                                pending.version: "failed"}
    [row] = [b for b in restarted.list_builds(owner, app.name) if b.id == build.id]
    assert row.status == "failed" and "interrupted" in row.output


def test_a_deploy_another_process_still_runs_is_left_to_it(
        open_store, store: Store, owner: User, app: App) -> None:
    """Several processes share one database: a release `deploying` at this
    start may be another process's deploy in flight (it holds the app's
    lock to its end). Settling waits for the lock and never overrides what
    that deploy decided, even when this start would decide otherwise."""
    import threading
    import time

    runner, _ = _live(store, owner, app)
    v2 = _crash_mid_deploy(store, owner, app, runner, "started")  # v1 still serves
    other = open_store()  # the other process's view of the same database
    holding, release_it = threading.Event(), threading.Event()

    def other_process_deploy() -> None:
        with other.locks.hold(f"app:{app.name}"):
            holding.set()
            release_it.wait(10)
            other._set_status(other.get_release(app, v2), "succeeded")  # its deploy ends

    worker = threading.Thread(target=other_process_deploy)
    worker.start()
    assert holding.wait(10)
    fresh = open_store()
    found = interrupted_deploys(fresh)
    assert [item.version for item in found] == [v2]
    result: dict = {}
    settler = threading.Thread(target=lambda: result.update(
        settle(fresh, found, runner.serving_version)))
    settler.start()
    time.sleep(0.5)
    assert not result and settler.is_alive()  # waits for the other deploy
    release_it.set()
    worker.join(10)
    settler.join(10)
    # v1's replicas serve here, so this start alone would have said failed.
    assert result == {(app.name, v2): "succeeded"}
    assert _statuses(fresh, owner, app)[v2] == "succeeded"
