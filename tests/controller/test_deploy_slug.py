"""`deploy_slug`: the one controller call a push makes (issue 15) for
release → deploy, under the app's release lock, with the deploy's own lines
kept apart from the pusher's record."""
from __future__ import annotations

import threading

import pytest

from controller.errors import DeployFailed
from tests.controller.test_releases import new_slug


def test_a_push_is_released_and_deployed_in_one_call(store, owner, app, deployer):
    said: list[str] = []
    deploy_lines: list[str] = []
    release = store.deploy_slug(app, new_slug(store, app, "aaa"), "Deploy aaa", owner.email,
                                said.append, deploy_output=deploy_lines.append)
    assert release.version == 1 and release.status == "succeeded"
    assert store.current_release(app).version == 1
    assert deployer.deployed == [(app.name, 1)]
    assert deployer.status_during_deploy == ["deploying"]
    # The pusher hears of the release; the deployer's lines go their own way
    # (the deployer records them in the app's logs itself).
    assert said == ["-----> Released v1"]
    assert deploy_lines[:2] == ["deploying v1", "-----> Starting 1 web replica(s) of v1"]
    # ... and the release runs: the in-memory runner's replicas serve v1.
    assert deployer.memory.serving_version(app.name) == 1


def test_the_release_is_made_under_the_app_release_lock(store, owner, app, deployer,
                                                          monkeypatch):
    """Nothing (a config change, a rollback) can slip between the making of
    the push's release and its deploy: the lock is already held when the
    release is made. The wrapper only observes; the real method runs."""
    free_while_creating: list[bool] = []
    real_create = store.create_release

    def observed(*args, **kwargs):
        def try_lock() -> None:
            lock = store.release_lock(app)
            got = lock.acquire(blocking=False)
            if got:
                lock.release()
            free_while_creating.append(got)

        other = threading.Thread(target=try_lock)
        other.start()
        other.join(5)
        return real_create(*args, **kwargs)

    monkeypatch.setattr(store, "create_release", observed)
    store.deploy_slug(app, new_slug(store, app, "aaa"), "Deploy aaa", owner.email)
    assert free_while_creating == [False]


def test_a_failed_deploy_marks_the_release_failed_and_raises(store, owner, app, deployer):
    store.deploy_slug(app, new_slug(store, app, "aaa"), "Deploy aaa", owner.email)
    deployer.fail_with = DeployFailed("v2 failed to start", log_tail=["boom"])
    with pytest.raises(DeployFailed) as failed:
        store.deploy_slug(app, new_slug(store, app, "bbb"), "Deploy bbb", owner.email)
    assert failed.value.log_tail == ["boom"]
    assert store.get_release(app, 2).status == "failed"
    assert store.current_release(app).version == 1
