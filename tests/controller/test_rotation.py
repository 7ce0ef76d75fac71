"""Master-key rotation: everything re-sealed under a new key, the old key
retired only at the end, and an interrupted rotation still decrypts."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from controller import db
from controller.crypto import DecryptError, Keyring
from tests.controller.conftest import RecordingDeployer


def tokens(store) -> list[str]:
    with store.db.read() as conn:
        return ([r[0] for r in conn.execute(sa.select(db.config_vars.c.value_ct))]
                + [r[0] for r in conn.execute(sa.select(db.releases.c.config_ct))]
                + [r[0] for r in conn.execute(sa.select(db.apps.c.secrets_ct))])


@pytest.fixture
def filled(store, owner, live_app):
    store.set_config(owner, live_app.name, {"A": "alpha", "B": "beta"})
    store.set_config(owner, live_app.name, {"C": "gamma"})
    return live_app


def test_rotation_reencrypts_everything_and_retires_the_old_key(store, owner, filled,
                                                                tmp_path, open_store):
    secrets_before = store.app_secrets(filled)
    env_before = store.release_env(filled, store.current_release(filled))
    old_ids = store.keyring.key_ids()
    old_key_file = (tmp_path / "data" / "master.keys").read_text()
    count = store.rotate_master_key()
    # 3 config values + 3 release snapshots + 1 app's secrets.
    assert count == len(tokens(store)) == 7
    new_ids = store.keyring.key_ids()
    assert len(new_ids) == 1 and new_ids[0] not in old_ids
    assert all(t.startswith(f"v1:{new_ids[0]}:") for t in tokens(store))
    doc = json.loads((tmp_path / "data" / "master.keys").read_text())
    assert list(doc["keys"]) == new_ids
    # Values read the same, here and after a reopen.
    reopened = open_store()
    for s in (store, reopened):
        assert s.get_config(owner, filled.name) == {"A": "alpha", "B": "beta", "C": "gamma"}
        assert s.app_secrets(filled) == secrets_before
        assert s.release_env(filled, s.current_release(filled)) == env_before
    # The retired key is gone: a keyring of only the old key opens nothing.
    old_only = tmp_path / "old"
    old_only.mkdir()
    (old_only / "master.keys").write_text(old_key_file)
    with pytest.raises(DecryptError):
        Keyring(old_only).decrypt(tokens(store)[0], "config:%d:A" % filled.id)


def test_interrupted_rotation_still_decrypts_and_a_rerun_finishes(store, owner, filled,
                                                                  open_store):
    old_id = store.keyring.current_id
    new_id = store.keyring.begin_rotation()
    assert store.reencrypt_all(limit=2) == 2  # ... and then the process "dies"
    mixed = tokens(store)
    assert sum(t.startswith(f"v1:{new_id}:") for t in mixed) == 2
    assert sum(t.startswith(f"v1:{old_id}:") for t in mixed) == len(mixed) - 2
    reopened = open_store()
    assert sorted(reopened.keyring.key_ids()) == sorted([old_id, new_id])
    assert reopened.get_config(owner, filled.name) == {"A": "alpha", "B": "beta", "C": "gamma"}
    for release in reopened.list_releases(owner, filled.name):
        reopened.release_env(filled, release)
    # New writes in the meantime go under the new key.
    reopened.set_deployer(RecordingDeployer(reopened))
    reopened.set_config(owner, filled.name, {"D": "delta"})
    count = reopened.rotate_master_key()
    assert count == len(tokens(reopened))
    assert len(reopened.keyring.key_ids()) == 1
    assert reopened.get_config(owner, filled.name)["D"] == "delta"


def test_a_running_store_sees_a_rotation_done_by_another_process(store, owner, filled,
                                                                  open_store):
    """`shipway server rotate-key` runs beside a live server."""
    other = open_store()
    other.rotate_master_key()
    assert store.get_config(owner, filled.name)["A"] == "alpha"
    store.set_config(owner, filled.name, {"E": "eps"})
    assert store.keyring.current_id == other.keyring.current_id
    assert other.get_config(owner, filled.name)["E"] == "eps"
