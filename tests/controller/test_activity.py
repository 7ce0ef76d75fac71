"""Activity (issue 18 item 5): every action on an app is recorded in the
database with who and when, newest first, config changes by name only; and
`releases:info`'s data: the push's build behind a release."""
from __future__ import annotations

import pytest

from controller.errors import BadRequest, DeployFailed, NotFound
from controller.maintenance import RouteOverlays
from tests.controller.test_releases import new_slug


class RouterStub:
    """Only the router's answer to maintenance; the router is not under test."""

    def set_maintenance(self, app: str, on: bool) -> None:
        pass


def push(store, app, owner, commit):
    build = store.start_build(app, owner, "refs/heads/main", commit)
    try:
        release = store.deploy_slug(app, new_slug(store, app, commit), f"Deploy {commit}",
                                    owner.email)
    except DeployFailed:
        store.finish_build(build.id, "failed", f"building {commit}\ndeploy failed\n")
        raise
    store.finish_build(build.id, "succeeded", f"building {commit}\ncompiled ok\n",
                       release.version)
    return release


def test_a_scenario_is_listed_newest_first_with_names_but_no_values(store, owner, app,
                                                                     deployer):
    collab = store.signup("collab@example.com", "collab-password")[0]
    push(store, app, owner, "aaa1111")
    store.set_config(owner, app.name, {"DATABASE_URL": "postgres://u:s3cr3t-value@db/x",
                                       "API_TOKEN": "tok-hidden-value"})
    store.unset_config(owner, app.name, ["API_TOKEN"])
    store.scale(owner, app.name, {"web": 2})
    store.restart(owner, app.name)
    store.add_domain(owner, app.name, "www.activity-test.example")
    store.remove_domain(owner, app.name, "www.activity-test.example")
    store.add_collaborator(owner, app.name, collab.email)
    store.rollback(collab, app.name, 1)
    RouteOverlays(store, RouterStub()).set_maintenance(owner, app.name, True)
    RouteOverlays(store, RouterStub()).set_maintenance(owner, app.name, False)
    store.remove_collaborator(owner, app.name, collab.email)
    deployer.fail_with = DeployFailed("v5 failed to start", log_tail=["boom"])
    with pytest.raises(DeployFailed):
        push(store, app, owner, "bbb2222")

    entries = store.list_activity(owner, app.name, 100)
    got = [(e.actor, e.action) for e in reversed(entries)]
    o, c = owner.email, collab.email
    assert got == [
        (o, "push"), (o, "deploy"), (o, "config"), (o, "config"), (o, "scale"), (o, "restart"),
        (o, "domains:add"), (o, "domains:remove"), (o, "access:add"), (c, "rollback"),
        (o, "maintenance:on"), (o, "maintenance:off"), (o, "access:remove"),
        (o, "push"), (o, "deploy"), (o, "push")]
    assert [e.id for e in entries] == sorted((e.id for e in entries), reverse=True)
    assert entries[0].created_at >= entries[-1].created_at
    first_deploy, failed_deploy = entries[-2], entries[1]
    assert first_deploy.detail["status"] == "succeeded" and "v1" in first_deploy.summary
    assert failed_deploy.detail["status"] == "failed" and "failed" in failed_deploy.summary
    assert entries[0].summary == "push of bbb2222 rejected"
    config_set = entries[-3]
    assert config_set.detail == {"set": ["API_TOKEN", "DATABASE_URL"], "unset": []}
    assert "DATABASE_URL" in config_set.summary
    assert entries[-5].detail == {"formation": {"web": 2}}
    everything = repr([(e.summary, e.detail) for e in entries])
    assert "s3cr3t-value" not in everything and "tok-hidden-value" not in everything
    # -n: the newest N
    assert [e.id for e in store.list_activity(owner, app.name, 3)] == [e.id for e in entries[:3]]


def test_only_members_read_the_activity(store, owner, app, deployer):
    push(store, app, owner, "aaa1111")
    stranger = store.signup("stranger@example.com", "stranger-password")[0]
    with pytest.raises(NotFound):
        store.list_activity(stranger, app.name)
    with pytest.raises(BadRequest):
        store.list_activity(owner, app.name, 0)


def test_release_info_finds_the_push_build_behind_a_release(store, owner, app, deployer):
    release = push(store, app, owner, "aaa1111")
    build = store.build_for_release(app, release)
    assert build is not None and "compiled ok" in build.output
    deployer.fail_with = DeployFailed("v2 failed", log_tail=["boom"])
    with pytest.raises(DeployFailed):
        push(store, app, owner, "bbb2222")
    failed = store.get_release(app, 2)
    assert failed.status == "failed"
    assert "deploy failed" in store.build_for_release(app, failed).output
    deployer.fail_with = None
    made_by_config = store.set_config(owner, app.name, {"X": "1"})
    assert store.build_for_release(app, made_by_config) is None
