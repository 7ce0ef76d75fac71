"""Formation (scale, restart), custom domains and the build history."""
from __future__ import annotations

import pytest

from controller.errors import BadRequest, Conflict, NotFound, Unavailable


def test_default_formation(store, app):
    assert store.get_formation(app) == {"web": 1}


def test_scale_validates_and_applies(store, owner, live_app, deployer):
    assert store.scale(owner, live_app.name, {"web": 3}) == {"web": 3}
    assert store.scale(owner, live_app.name, {"worker": 2, "web": 0}) == {"web": 0, "worker": 2}
    assert deployer.formations == [live_app.name, live_app.name]
    for bad in ({"web": -1}, {"web": 101}, {"web": "2"}, {"web": 1.5}, {"web": True},
                {"clock": 1}, {"Bad Type": 1}, {}, None):
        with pytest.raises(BadRequest):
            store.scale(owner, live_app.name, bad)
    assert store.get_formation(live_app) == {"web": 0, "worker": 2}
    assert len(deployer.formations) == 2


def test_scale_before_any_release_accepts_any_type(store, owner, app, deployer):
    assert store.scale(owner, app.name, {"web": 2, "clock": 1}) == {"clock": 1, "web": 2}


def test_scale_and_restart_permissions(store, owner, live_app, deployer):
    collab = store.signup("c@example.com", "a-long-password")[0]
    stranger = store.signup("s@example.com", "a-long-password")[0]
    store.add_collaborator(owner, live_app.name, collab.email)
    store.scale(collab, live_app.name, {"web": 2})
    store.restart(collab, live_app.name)
    with pytest.raises(NotFound):
        store.scale(stranger, live_app.name, {"web": 5})
    with pytest.raises(NotFound):
        store.restart(stranger, live_app.name)
    assert store.get_formation(live_app)["web"] == 2
    assert deployer.restarts == [live_app.name]


def test_restart_without_deployer_is_unavailable(store, owner, app):
    with pytest.raises(Unavailable):
        store.restart(owner, app.name)


def test_domains(store, owner, app, deployer):
    d = store.add_domain(owner, app.name, "WWW.Example.COM.")
    assert d.hostname == "www.example.com" and d.app_id == app.id
    assert store.list_domains(owner, app.name) == [d]
    assert store.app_domains(app) == ["www.example.com"]
    assert deployer.routes == [app.name]
    other = store.create_app(owner, "other-app")
    with pytest.raises(Conflict):
        store.add_domain(owner, other.name, "www.example.com")
    store.remove_domain(owner, app.name, "www.example.com")
    assert store.app_domains(app) == [] and deployer.routes == [app.name, app.name]
    with pytest.raises(NotFound):
        store.remove_domain(owner, app.name, "www.example.com")
    store.add_domain(owner, other.name, "www.example.com")  # free again


def test_a_domain_is_kept_when_the_router_fails_to_take_it(store, owner, app, deployer,
                                                           monkeypatch):
    def refuse(found):  # injected: nginx is down (supervision routes the app again)
        deployer.routes.append(found.name)
        raise RuntimeError("injected: router down")

    monkeypatch.setattr(deployer, "refresh_route", refuse)
    d = store.add_domain(owner, app.name, "www.example.com")
    assert store.app_domains(app) == ["www.example.com"] and deployer.routes == [app.name]
    store.remove_domain(owner, app.name, d.hostname)
    assert store.app_domains(app) == [] and deployer.routes == [app.name, app.name]


@pytest.mark.parametrize("host", ["", "localhost", "example", "-bad.example.com",
                                  "bad-.example.com", "a..b.com", "under_score.example.com",
                                  "x" * 64 + ".com", "1.2.3.4", "demo-app.localhost",
                                  "sp ace.com", "*.wild.example", None])  # IDNA: test_domain_hostnames.py
def test_bad_hostnames_change_nothing(store, owner, app, deployer, host):
    with pytest.raises(BadRequest):
        store.add_domain(owner, app.name, host)
    assert store.app_domains(app) == [] and deployer.routes == []


def test_domain_permissions(store, owner, app):
    stranger = store.signup("s@example.com", "a-long-password")[0]
    with pytest.raises(NotFound):
        store.add_domain(stranger, app.name, "www.example.com")
    with pytest.raises(NotFound):
        store.list_domains(stranger, app.name)


def test_builds(store, owner, app):
    build = store.start_build(app, owner, "refs/heads/main", "abc123")
    assert build.status == "running" and build.finished_at is None
    assert build.user_email == owner.email
    done = store.finish_build(build.id, "failed", "x" * 100_000 + "the reason")
    assert done.status == "failed" and done.finished_at is not None
    assert done.output.endswith("the reason") and len(done.output) <= 64 * 1024
    second = store.start_build(app, owner, "refs/heads/main", "def456")
    assert [b.id for b in store.list_builds(owner, app.name)] == [second.id, build.id]
    with pytest.raises(BadRequest):
        store.finish_build(second.id, "running", "")
    with pytest.raises(NotFound):
        store.finish_build(99999, "succeeded", "")
    stranger = store.signup("s@example.com", "a-long-password")[0]
    with pytest.raises(NotFound):
        store.list_builds(stranger, app.name)
