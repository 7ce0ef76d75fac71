"""The release rules: numbering (also under concurrency), status
transitions, what is live, rollback, the run environment, and that a
reopened store has lost nothing."""
from __future__ import annotations

import threading

import pytest

from controller.errors import BadRequest, DeployFailed, NotFound
from tests.controller.conftest import RecordingDeployer


def new_slug(store, app, commit):
    return store.record_slug(app, f"{app.name}/{commit}.tgz", commit[0] * 64, 10, commit,
                             {"web": f"run {commit}"}, ["python"])


def deploy(store, app, owner, commit):
    slug = new_slug(store, app, commit)
    return store.deploy_release(app, store.create_release(app, slug, f"Deploy {commit}",
                                                          owner.email))


def test_versions_count_up_per_app(store, owner, app, deployer):
    other = store.create_app(owner, "other-app")
    assert store.create_release(app, None, "config only", owner.email).version == 1
    assert store.create_release(app, new_slug(store, app, "aaa"), "x", owner.email).version == 2
    assert store.create_release(other, None, "x", owner.email).version == 1
    assert store.create_release(app, None, "x", "shipway").version == 3
    first = store.get_release(app, 1)
    assert first.status == "pending" and first.slug_id is None and first.process_types == {}
    assert [r.version for r in store.list_releases(owner, app.name)] == [3, 2, 1]


def test_status_transitions(store, owner, app, deployer):
    release = store.create_release(app, new_slug(store, app, "abc"), "Deploy abc", owner.email)
    assert release.status == "pending"
    assert store.current_release(app) is None
    done = store.deploy_release(app, release, output=lambda line: None)
    assert deployer.status_during_deploy == ["deploying"]
    assert done.status == "succeeded" and store.current_release(app) == done
    deployer.fail_with = DeployFailed("injected: did not become healthy", ["boom"])
    bad = store.create_release(app, new_slug(store, app, "bad"), "Deploy bad", owner.email)
    with pytest.raises(DeployFailed) as err:
        store.deploy_release(app, bad)
    assert err.value.log_tail == ["boom"]
    assert store.get_release(app, bad.version).status == "failed"
    assert store.current_release(app) == done  # the last good release is live
    deployer.fail_with = RuntimeError("injected: the runner crashed")
    crash = store.create_release(app, new_slug(store, app, "crash"), "x", owner.email)
    with pytest.raises(RuntimeError):
        store.deploy_release(app, crash)
    assert store.get_release(app, crash.version).status == "failed"


def test_output_reaches_the_deployer(store, owner, app, deployer):
    lines = []
    release = store.create_release(app, new_slug(store, app, "abc"), "x", owner.email)
    store.deploy_release(app, release, output=lines.append)
    assert lines[0] == f"deploying v{release.version}"
    assert f"-----> Starting 1 web replica(s) of v{release.version}" in lines  # the runner's


def test_concurrent_config_changes_number_releases_without_gaps(store, owner, live_app,
                                                                deployer):
    threads, per_thread = 8, 5
    errors = []

    def worker(i):
        try:
            for j in range(per_thread):
                store.set_config(owner, live_app.name, {f"T{i}": str(j)})
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(120)
    assert errors == []
    versions = [r.version for r in store.list_releases(owner, live_app.name)]
    total = 1 + threads * per_thread
    assert sorted(versions) == list(range(1, total + 1))  # no duplicates, no gaps
    assert all(r.status == "succeeded" for r in store.list_releases(owner, live_app.name))
    final = {f"T{i}": str(per_thread - 1) for i in range(threads)}
    assert store.get_config(owner, live_app.name) == final
    # The newest release's snapshot is the final config.
    assert store.release_config(live_app, store.current_release(live_app)) == final


def test_concurrent_create_release(store, owner, app):
    results, errors = [], []

    def worker():
        try:
            for _ in range(5):
                results.append(store.create_release(app, None, "x", owner.email).version)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    pool = [threading.Thread(target=worker) for _ in range(6)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(120)
    assert errors == [] and sorted(results) == list(range(1, 31))


def test_rollback_defaults_to_the_good_release_before_the_current(store, owner, app,
                                                                  deployer):
    store.set_config(owner, app.name, {"V": "one"})
    deploy(store, app, owner, "aaa")                          # v1 (V=one)
    store.set_config(owner, app.name, {"V": "two"})           # v2 (aaa, V=two)
    deployer.fail_with = DeployFailed("injected")
    with pytest.raises(DeployFailed):
        deploy(store, app, owner, "bbb")                      # v3 failed
    deployer.fail_with = None
    deploy(store, app, owner, "ccc")                          # v4 (ccc, V=two)
    back = store.rollback(owner, app.name)                    # v5 = v2
    assert back.version == 5 and back.status == "succeeded"
    assert back.description == "Rollback to v2"
    assert back.commit == "aaa" and back.slug_id == store.get_release(app, 2).slug_id
    assert store.release_config(app, back) == {"V": "two"}
    assert store.current_release(app).version == 5
    # Rolling back again goes to the good release before v5: v4.
    again = store.rollback(owner, app.name)
    assert again.description == "Rollback to v4" and again.commit == "ccc"
    # An explicit version: v1 with its own config, not today's.
    explicit = store.rollback(owner, app.name, 1)
    assert explicit.commit == "aaa" and store.release_config(app, explicit) == {"V": "one"}
    assert explicit.version == 7
    # Like Heroku, rolling back restores the app's config to the target's.
    assert store.get_config(owner, app.name) == {"V": "one"}
    following = store.set_config(owner, app.name, {"W": "x"})
    assert store.release_config(app, following) == {"V": "one", "W": "x"}


def test_rollback_errors_leave_no_release(store, owner, app, deployer):
    with pytest.raises(BadRequest):
        store.rollback(owner, app.name)  # nothing live
    deploy(store, app, owner, "aaa")
    with pytest.raises(BadRequest):
        store.rollback(owner, app.name)  # nothing before v1
    with pytest.raises(NotFound):
        store.rollback(owner, app.name, 42)
    with pytest.raises(BadRequest):
        store.rollback(owner, app.name, "1")
    store.create_release(app, None, "config only", owner.email)  # v2, no slug
    with pytest.raises(BadRequest, match="no slug"):
        store.rollback(owner, app.name, 2)
    assert [r.version for r in store.list_releases(owner, app.name)] == [2, 1]
    stranger = store.signup("s@example.com", "a-long-password")[0]
    with pytest.raises(NotFound):
        store.rollback(stranger, app.name, 1)
    with pytest.raises(NotFound):
        store.list_releases(stranger, app.name)


def test_failed_rollback_is_marked_failed_and_keeps_the_config(store, owner, app, deployer):
    store.set_config(owner, app.name, {"V": "one"})
    deploy(store, app, owner, "aaa")                          # v1 (V=one)
    store.set_config(owner, app.name, {"V": "two", "DATABASE_URL": "db"})  # v2
    deployer.fail_with = DeployFailed("injected")
    with pytest.raises(DeployFailed):
        store.rollback(owner, app.name, 1)
    assert store.get_release(app, 3).status == "failed"
    assert store.current_release(app).version == 2
    # v2 still runs, so its config is still the app's: the next change builds on it
    assert store.get_config(owner, app.name) == {"V": "two", "DATABASE_URL": "db"}
    deployer.fail_with = None
    following = store.set_config(owner, app.name, {"W": "x"})
    assert store.release_config(app, following) == {"V": "two", "DATABASE_URL": "db", "W": "x"}


def test_no_rollback_to_a_failed_release_or_a_version_out_of_range(store, owner, app,
                                                                    deployer):
    deploy(store, app, owner, "aaa")
    deployer.fail_with = DeployFailed("injected")
    with pytest.raises(DeployFailed):
        deploy(store, app, owner, "bbb")                      # v2 failed
    deployer.fail_with = None
    deploy(store, app, owner, "ccc")                          # v3
    with pytest.raises(BadRequest, match="v2 failed to deploy"):
        store.rollback(owner, app.name, 2)
    for version in (0, -1, 10**20):
        with pytest.raises(BadRequest, match="whole number"):
            store.rollback(owner, app.name, version)
    assert [r.version for r in store.list_releases(owner, app.name)] == [3, 2, 1]


class GatedDeployer(RecordingDeployer):
    """Injected timing: the first deploy waits at a gate until the test
    opens it, as a slow health check would."""

    def __init__(self, store) -> None:
        super().__init__(store)
        self.entered, self.gate = threading.Event(), threading.Event()

    def deploy(self, app, release, output, hot=False) -> None:
        if not self.entered.is_set():
            self.entered.set()
            assert self.gate.wait(30)
        super().deploy(app, release, output, hot)


@pytest.mark.parametrize("change", ["config", "rollback", "scale", "restart"])
def test_changes_wait_for_a_deploy_in_progress(store, owner, app, change):
    """A config change made while a push's release is deploying waits for
    it, and is made from the pushed slug, not the one before (which would
    undo the push); a rollback's default target, a scale and a restart see
    the pushed release as current."""
    deployer = GatedDeployer(store)
    store.set_deployer(deployer)
    deployer.entered.set()
    deploy(store, app, owner, "aaa")                          # v1
    deployer.entered.clear()
    pushed = new_slug(store, app, "bbb")

    def push() -> None:  # the call hooks/pipeline.py makes
        store.deploy_slug(app, pushed, "Deploy bbb", owner.email)

    pusher = threading.Thread(target=push)
    pusher.start()
    assert deployer.entered.wait(10)                          # v2 is deploying
    seen: dict = {}
    said: list[str] = []

    def act() -> None:
        if change == "config":
            seen["release"] = store.set_config(owner, app.name, {"K": "v"}, said.append)
        elif change == "rollback":
            seen["release"] = store.rollback(owner, app.name, None, said.append)
        elif change == "scale":
            store.scale(owner, app.name, {"web": 2}, said.append)
        else:
            store.restart(owner, app.name, said.append)
        seen["current"] = store.current_release(app).version

    actor = threading.Thread(target=act)
    actor.start()
    try:
        actor.join(0.5)
        assert actor.is_alive(), "it did not wait for the deploy in progress"
    finally:
        deployer.gate.set()
        pusher.join(10)
        actor.join(10)
    assert store.get_release(app, 2).status == "succeeded"
    assert said[0] == f"-----> Waiting for the deploy in progress on {app.name} to end"
    if change == "config":
        assert seen["release"].slug_id == pushed.id and seen["release"].version == 3
    elif change == "rollback":
        assert seen["release"].description == "Rollback to v1"
    else:
        assert seen["current"] == 2
        assert (deployer.formations if change == "scale" else deployer.restarts) == [app.name]


def test_release_env(store, owner, live_app):
    store.set_config(owner, live_app.name, {"DATABASE_URL": "postgres://x"})
    release = store.current_release(live_app)
    env = store.release_env(live_app, release)
    secrets = store.app_secrets(live_app)
    assert env["DATABASE_URL"] == "postgres://x"
    assert env["APP_NAME"] == live_app.name
    assert env["APP_VERSION"] == f"v{release.version}"
    assert env["RELEASE_COOKIE"] == secrets.release_cookie
    assert env["SECRET_KEY_BASE"] == secrets.secret_key_base
    assert len(env["SECRET_KEY_BASE"]) >= 64
    assert env["RELEASE_DISTRIBUTION"] == "name"
    assert env["RELEASE_NODE"] == env["MY_NODE_NAME"] == f"{live_app.name}@127.0.0.1"
    assert "PORT" not in env
    assert env["SHIPWAY_SSH_HOST_KEY"] == store.ssh_host_key(live_app)  # for the runner
    # Stable across releases; the snapshot is the release's own.
    older = store.release_env(live_app, store.get_release(live_app, 1))
    assert older["SECRET_KEY_BASE"] == env["SECRET_KEY_BASE"]
    assert "DATABASE_URL" not in older and older["APP_VERSION"] == "v1"


def test_slugs(store, owner, app):
    slug = new_slug(store, app, "abc")
    assert store.get_slug(slug.id) == slug
    assert slug.process_types == {"web": "run abc"} and slug.buildpacks == ["python"]
    assert store.list_slugs(app) == [slug]
    with pytest.raises(NotFound):
        store.get_slug(99999)
    other = store.create_app(owner, "other-app")
    with pytest.raises(BadRequest):
        store.create_release(other, slug, "x", owner.email)


def test_reopen_loses_nothing(store, owner, live_app, deployer, open_store, tmp_path):
    from tests.controller.test_ssh_keys import keygen

    key = store.add_ssh_key(owner, keygen(tmp_path, "ed25519").with_suffix(".pub").read_text())
    collab = store.signup("c@example.com", "a-long-password")[0]
    store.add_collaborator(owner, live_app.name, collab.email)
    store.set_config(owner, live_app.name, {"A": "1"})
    store.scale(owner, live_app.name, {"web": 2, "worker": 1})
    store.add_domain(owner, live_app.name, "app.example.net")
    build = store.finish_build(store.start_build(live_app, owner, "refs/heads/main", "c0ffee").id,
                               "succeeded", "built", 2)
    _, api_key = store.login(owner.email, "owner-password")
    store.close()

    again = open_store()
    again.set_deployer(RecordingDeployer(again))
    assert again.user_for_api_key(api_key) == owner
    assert again.list_ssh_keys(owner) == [key]
    assert again.list_apps(collab) == [live_app]
    assert again.get_config(owner, live_app.name) == {"A": "1"}
    assert [r.version for r in again.list_releases(owner, live_app.name)] == [2, 1]
    assert again.current_release(live_app).version == 2
    assert again.get_formation(live_app) == {"web": 2, "worker": 1}
    assert again.app_domains(live_app) == ["app.example.net"]
    assert again.list_builds(owner, live_app.name) == [build]
    # Numbering continues after the reopen.
    assert again.set_config(owner, live_app.name, {"B": "2"}).version == 3


def test_work_cut_off_by_a_crash_is_marked_failed_at_start(open_store, store, owner, app,
                                                           deployer):
    """A server killed mid-push leaves a running build and a deploying (or
    still pending) release; the next start marks both failed, and what was
    live stays live."""
    live = deploy(store, app, owner, "good")
    build = store.start_build(app, owner, "refs/heads/main", "cut")
    slug = new_slug(store, app, "cut")
    cut = store._set_status(store.create_release(app, slug, "Deploy cut", owner.email),
                            "deploying")
    pending = store.create_release(app, None, "config", owner.email)
    reopened = open_store()
    assert reopened.fail_interrupted() == (2, 1)
    assert reopened.get_release(app, cut.version).status == "failed"
    assert reopened.get_release(app, pending.version).status == "failed"
    assert reopened.get_release(app, live.version).status == "succeeded"
    assert reopened.current_release(app).version == live.version
    [row] = [b for b in reopened.list_builds(owner, app.name) if b.id == build.id]
    assert row.status == "failed" and "interrupted" in row.output
    assert row.finished_at is not None
    assert reopened.fail_interrupted() == (0, 0)  # nothing left to mark


def test_a_release_that_went_live_hot_is_marked_and_kept_marked(open_store, store, owner, app,
                                                               deployer):
    """issue 17: `releases` marks a release that went live hot (the running
    replicas upgraded in place); a hot push that had to restart (here the
    process types changed), a plain deploy and a rollback are restarts."""
    deploy(store, app, owner, "one")
    slug = new_slug(store, app, "one")  # the same process types: in place
    hot = store.deploy_release(app, store.create_release(app, slug, "Deploy hot", owner.email),
                               hot=True)
    assert hot.hot and ("hot-upgraded", app.name, hot.version) in deployer.memory.events
    changed = store.record_slug(app, f"{app.name}/two.tgz", "b" * 64, 10, "two",
                                {"web": "run two", "worker": "run w"}, ["python"])
    fallback = store.deploy_release(
        app, store.create_release(app, changed, "Deploy two", owner.email), hot=True)
    assert not fallback.hot and ("deployed", app.name, fallback.version) in deployer.memory.events
    back = store.rollback(owner, app.name, hot.version)
    assert not back.hot
    listed = {r.version: r.hot for r in open_store().list_releases(owner, app.name)}
    assert listed == {1: False, hot.version: True, fallback.version: False, back.version: False}
