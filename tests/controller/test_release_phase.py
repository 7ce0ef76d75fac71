"""The release phase (issue 18 item 1) at the controller, over the real
Deployer and the in-memory runner: a release's `release` command runs as a
one-off before any replica of it, with the new release's config; a failure
or a timeout fails the push, config change or rollback, and the last good
release keeps serving; `release` never gets replicas. The runner's one-off
outcomes are injected faults (runner/memory.py `oneoff_outcome`)."""
from __future__ import annotations

import pytest

from controller.deploys import release_phase_timeout
from controller.errors import DeployFailed
from core.settings import Settings


def release_slug(store, app, commit, release="mix ecto.migrate"):
    types = {"web": f"run {commit}"}
    if release is not None:
        types["release"] = release
    return store.record_slug(app, f"{app.name}/{commit}.tgz", commit[0] * 64, 10, commit,
                             types, ["python"])


def test_the_release_command_runs_before_any_replica_with_the_new_config(
        store, owner, app, deployer):
    store.set_config(owner, app.name, {"DATABASE_URL": "postgres://db/one"})
    lines: list[str] = []
    release = store.deploy_slug(app, release_slug(store, app, "aaa"), "Deploy aaa", owner.email,
                                lines.append)
    memory = deployer.memory
    assert memory.oneoff_runs == [(app.name, "release", release.version, "mix ecto.migrate")]
    kinds = [e for e, a, v in memory.events if v == release.version]
    assert kinds.index("oneoff:release") < kinds.index("deployed")
    assert any("Running release command" in line for line in lines)
    # `release` is never a replica, even when scaled by mistake.
    store.scale(owner, app.name, {"release": 2})
    assert {r.process_type for r in memory.replicas(app.name)} == {"web"}


def test_a_failing_release_command_fails_the_push_and_the_last_good_release_serves(
        store, owner, app, deployer):
    good = store.deploy_slug(app, release_slug(store, app, "aaa"), "Deploy aaa", owner.email)
    deployer.memory.oneoff_outcome(app.name, exit_code=2, lines=["migration 42 failed"])
    lines: list[str] = []
    with pytest.raises(DeployFailed) as failed:
        store.deploy_slug(app, release_slug(store, app, "bbb"), "Deploy bbb", owner.email,
                          lines.append)
    assert "exit status 2" in failed.value.message
    assert "migration 42 failed" in lines  # the command's own output reaches the pusher
    assert store.current_release(app).version == good.version
    assert deployer.memory.serving_version(app.name) == good.version
    assert [r.version for r in deployer.memory.replicas(app.name)] == [good.version]


def test_a_release_command_past_its_timeout_fails_the_config_change(store, owner, app, deployer):
    good = store.deploy_slug(app, release_slug(store, app, "aaa"), "Deploy aaa", owner.email)
    deployer.memory.oneoff_outcome(app.name, hangs=True)
    lines: list[str] = []
    with pytest.raises(DeployFailed) as failed:
        store.set_config(owner, app.name, {"RELEASE_PHASE_TIMEOUT": "7"}, lines.append)
    assert "timed out after 7 s" in failed.value.message
    assert any("timed out" in line for line in lines)
    assert deployer.memory.serving_version(app.name) == good.version


def test_an_app_without_a_release_command_runs_no_one_off(store, owner, app, deployer):
    store.deploy_slug(app, release_slug(store, app, "aaa", release=None), "Deploy", owner.email)
    assert deployer.memory.oneoff_runs == []


def test_the_timeout_is_the_servers_unless_the_app_sets_its_own():
    settings = Settings(release_phase_timeout=90)
    assert release_phase_timeout(settings, {}) == 90
    assert release_phase_timeout(settings, {"RELEASE_PHASE_TIMEOUT": "30"}) == 30
    assert release_phase_timeout(settings, {"RELEASE_PHASE_TIMEOUT": "junk"}) == 90
