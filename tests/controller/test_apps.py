"""Apps, names, the permission matrix (owner / collaborator / stranger),
collaborators, limits and destroy."""
from __future__ import annotations

import re

import pytest

from controller.errors import BadRequest, Conflict, Forbidden, NotFound
from controller.ssh_host_keys import public_host_key
from core.settings import Limits


@pytest.fixture
def people(store, owner, app):
    collab = store.signup("collab@example.com", "a-long-password")[0]
    stranger = store.signup("stranger@example.com", "a-long-password")[0]
    store.add_collaborator(owner, app.name, collab.email)
    return owner, collab, stranger


def test_create_and_lookup(store, owner):
    app = store.create_app(owner, "My-App")
    assert app.name == "my-app" and app.owner_id == owner.id
    assert app.owner_email == owner.email
    assert store.app_by_name("my-app") == app
    assert store.get_app(owner, "my-app") == app
    assert store.list_apps(owner) == [app]
    assert app in store.all_apps()


def test_generated_names_are_valid_and_unique(store, owner):
    names = {store.create_app(owner).name for _ in range(10)}
    assert len(names) == 10
    for name in names:
        assert re.fullmatch(r"[a-z]+-[a-z]+-\d{4}", name)


@pytest.mark.parametrize("name", ["ab", "a" * 31, "1abc", "-abc", "abc-", "ab_c", "a.bc",
                                  "a b", "ab--c", "ümlaut", 12, "x\n"])
def test_invalid_names_are_refused(store, owner, name):
    with pytest.raises(BadRequest):
        store.create_app(owner, name)
    assert store.list_apps(owner) == []


def test_names_are_unique_across_users(store, owner, app):
    other = store.signup("other@example.com", "a-long-password")[0]
    with pytest.raises(Conflict):
        store.create_app(other, app.name)
    assert store.list_apps(other) == []


def test_app_limit_counts_owned_apps(open_store):
    store = open_store(limits=Limits(apps_per_user=2))
    a = store.signup("a@example.com", "a-long-password")[0]
    b = store.signup("b@example.com", "a-long-password")[0]
    store.create_app(a, "app-one")
    store.create_app(a, "app-two")
    with pytest.raises(BadRequest, match="limit"):
        store.create_app(a, "app-three")
    store.create_app(b, "b-one")
    store.add_collaborator(b, "b-one", a.email)  # collaborations do not count
    store.create_app(b, "b-two")
    assert [x.name for x in store.list_apps(a)] == ["app-one", "app-two", "b-one"]


def test_permission_matrix(store, people, app):
    owner, collab, stranger = people
    assert store.get_app(owner, app.name, "owner") == app
    assert store.get_app(collab, app.name, "read") == app
    assert store.get_app(collab, app.name, "write") == app
    with pytest.raises(Forbidden):
        store.get_app(collab, app.name, "owner")
    for need in ("read", "write", "owner"):
        with pytest.raises(NotFound):
            store.get_app(stranger, app.name, need)
    # A stranger's error is the same as for an app that does not exist.
    with pytest.raises(NotFound) as missing:
        store.get_app(stranger, "no-such-app")
    with pytest.raises(NotFound) as hidden:
        store.get_app(stranger, app.name)
    assert str(missing.value).replace("no-such-app", "X") == str(hidden.value).replace(app.name, "X")
    # Collaborators read and write config; strangers see nothing.
    store.set_config(collab, app.name, {"A": "1"})
    assert store.get_config(owner, app.name) == {"A": "1"}
    with pytest.raises(NotFound):
        store.get_config(stranger, app.name)
    with pytest.raises(NotFound):
        store.set_config(stranger, app.name, {"B": "2"})
    # Only the owner manages access and destroys.
    with pytest.raises(Forbidden):
        store.add_collaborator(collab, app.name, stranger.email)
    with pytest.raises(Forbidden):
        store.remove_collaborator(collab, app.name, collab.email)
    with pytest.raises(Forbidden):
        store.destroy_app(collab, app.name)
    with pytest.raises(NotFound):
        store.destroy_app(stranger, app.name)
    assert store.list_apps(collab) == [app]
    assert store.list_apps(stranger) == []
    assert store.list_collaborators(collab, app.name) == [collab.email]
    assert store.get_config(owner, app.name) == {"A": "1"}


def test_collaborators(store, owner, app):
    b = store.signup("b@example.com", "a-long-password")[0]
    with pytest.raises(NotFound, match="no user with email nobody@example.com"):
        store.add_collaborator(owner, app.name, "nobody@example.com")
    with pytest.raises(BadRequest):
        store.add_collaborator(owner, app.name, owner.email)
    with pytest.raises(BadRequest):
        store.add_collaborator(owner, app.name, "not an email")
    store.add_collaborator(owner, app.name, "B@example.com")
    with pytest.raises(Conflict):
        store.add_collaborator(owner, app.name, b.email)
    assert store.list_collaborators(owner, app.name) == ["b@example.com"]
    store.remove_collaborator(owner, app.name, b.email)
    assert store.list_collaborators(owner, app.name) == []
    with pytest.raises(NotFound):
        store.get_app(b, app.name)
    with pytest.raises(NotFound):
        store.remove_collaborator(owner, app.name, b.email)


def test_collaborator_limit(open_store):
    store = open_store(limits=Limits(collaborators_per_app=1))
    owner = store.signup("o@example.com", "a-long-password")[0]
    store.signup("c1@example.com", "a-long-password")
    store.signup("c2@example.com", "a-long-password")
    store.create_app(owner, "small-team")
    store.add_collaborator(owner, "small-team", "c1@example.com")
    with pytest.raises(BadRequest, match="limit"):
        store.add_collaborator(owner, "small-team", "c2@example.com")
    assert store.list_collaborators(owner, "small-team") == ["c1@example.com"]


def test_authorized_keys_cover_owner_and_collaborators(store, people, app, tmp_path):
    from tests.controller.test_ssh_keys import keygen

    owner, collab, stranger = people
    lines = {}
    for who in people:
        pub = keygen(tmp_path, "ed25519").with_suffix(".pub").read_text()
        lines[who.email] = store.add_ssh_key(who, pub).public_key
    assert sorted(store.authorized_keys(app)) == sorted(
        [lines[owner.email], lines[collab.email]])


def test_app_secrets_are_stable_and_private(store, app, open_store):
    first = store.app_secrets(app)
    assert len(first.secret_key_base) >= 64
    assert len(first.release_cookie) >= 32
    assert first.node_basename == app.name
    assert open_store().app_secrets(app) == first  # survives a reopen
    other = store.create_app(store.signup("z@example.com", "a-long-password")[0], "other-app")
    assert store.app_secrets(other).secret_key_base != first.secret_key_base
    # One SSH host key per app, for every replica of it.
    assert "OPENSSH PRIVATE KEY" in first.ssh_host_key
    assert store.ssh_host_key(app) == first.ssh_host_key
    assert store.ssh_host_key(other) != first.ssh_host_key
    assert public_host_key(first.ssh_host_key).startswith("ssh-ed25519 ")


def test_an_app_made_before_host_keys_gets_one_once(store, app, open_store):
    """Apps whose secrets predate the host key get one on first need, stored
    with the other secrets (encrypted), and keep it."""
    import json

    import sqlalchemy as sa

    from controller.db import apps

    aad = f"app-secrets:{app.id}"
    with store.db.write() as conn:
        token = conn.execute(sa.select(apps.c.secrets_ct).where(apps.c.id == app.id)).scalar()
        doc = json.loads(store.keyring.decrypt(token, aad))
        del doc["ssh_host_key"]
        conn.execute(apps.update().where(apps.c.id == app.id).values(
            secrets_ct=store.keyring.encrypt(json.dumps(doc), aad)))
    before = store.app_secrets(app)
    assert before.ssh_host_key == "" and before.release_cookie == doc["release_cookie"]
    made = store.ssh_host_key(app)
    assert "OPENSSH PRIVATE KEY" in made
    assert open_store().ssh_host_key(app) == made
    assert open_store().app_secrets(app).release_cookie == doc["release_cookie"]


def test_destroy_runs_deployer_and_hooks_and_removes_rows(store, owner, live_app, deployer):
    seen = []

    def broken_hook(app):
        raise RuntimeError("injected hook failure")

    store.on_destroy(broken_hook)
    store.on_destroy(lambda app: seen.append(app.name))
    store.set_config(owner, live_app.name, {"K": "v"})
    store.add_domain(owner, live_app.name, "www.example.org")
    store.destroy_app(owner, live_app.name)
    assert deployer.destroyed == [live_app.name]
    assert seen == [live_app.name]  # ran although an earlier hook failed
    with pytest.raises(NotFound):
        store.app_by_name(live_app.name)
    assert store.list_apps(owner) == []
    # Every row went: the name, the domain are free again, no stray rows.
    import sqlalchemy as sa

    from controller import db
    with store.db.read() as conn:
        for table in (db.config_vars, db.releases, db.slugs, db.domains, db.formations,
                      db.builds, db.collaborators):
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() == 0
    again = store.create_app(owner, live_app.name)
    assert store.get_config(owner, again.name) == {}
    store.add_domain(owner, again.name, "www.example.org")


def test_destroy_stops_when_the_deployer_fails(store, owner, app, deployer):
    def refuse(app):
        raise RuntimeError("injected runner failure")

    deployer.destroy = refuse
    with pytest.raises(RuntimeError):
        store.destroy_app(owner, app.name)
    assert store.app_by_name(app.name) == app  # nothing deleted; can be retried
