"""Config vars: round trip, validation, the size limit, encryption at rest,
and the release a config change makes."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from controller import db
from controller.crypto import DecryptError
from controller.errors import BadRequest, DeployFailed, NotFound, TooLarge, Unavailable
from core.settings import Limits

SECRET = "s3cr3t-value-that-must-not-be-on-disk"


def raw_database(store, tmp_path, database_url) -> bytes:
    """Every byte the database holds: the SQLite files, or every column of
    every table read raw from PostgreSQL."""
    if database_url.startswith("sqlite"):
        with store.db.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(FULL)")
        return b"".join(p.read_bytes() for p in tmp_path.glob("shipway.db*"))
    out = []
    with store.db.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            out.append(repr(conn.execute(sa.text(f'SELECT * FROM "{table.name}"')).all()))
    return "\n".join(out).encode()


def test_round_trip(store, owner, app):
    assert store.get_config(owner, app.name) == {}
    assert store.set_config(owner, app.name, {"A": "1", "_b2": "two words", "EMPTY": ""}) is None
    store.set_config(owner, app.name, {"A": "changed", "UNICODE": "héllo ✓"})
    expected = {"A": "changed", "_b2": "two words", "EMPTY": "", "UNICODE": "héllo ✓"}
    assert store.get_config(owner, app.name) == expected
    assert store.current_config(app) == expected
    assert store.unset_config(owner, app.name, ["A", "NOT_SET"]) is None
    del expected["A"]
    assert store.get_config(owner, app.name) == expected


@pytest.mark.parametrize("values", [
    {"1ABC": "x"}, {"A-B": "x"}, {"": "x"}, {"A B": "x"}, {"PORT": "1"},
    {"APP_NAME": "x"}, {"SECRET_KEY_BASE": "x"}, {"RELEASE_COOKIE": "x"},
    {"SHIPWAY_ANYTHING": "x"}, {"A": 1}, {"A": None}, {"A": "nul\x00byte"}, {},
    {"GOOD": "1", "bad-name": "2"},
])
def test_bad_input_changes_nothing(store, owner, app, values):
    store.set_config(owner, app.name, {"KEEP": "me"})
    with pytest.raises(BadRequest):
        store.set_config(owner, app.name, values)
    assert store.get_config(owner, app.name) == {"KEEP": "me"}


@pytest.mark.parametrize("keys", [[], ["1ABC"], ["KEEP", "bad-name"], ["PORT"], "KEEP", None])
def test_bad_unset_changes_nothing(store, owner, app, keys):
    store.set_config(owner, app.name, {"KEEP": "me"})
    with pytest.raises(BadRequest):
        store.unset_config(owner, app.name, keys)
    assert store.get_config(owner, app.name) == {"KEEP": "me"}


def test_unknown_app(store, owner):
    with pytest.raises(NotFound):
        store.set_config(owner, "no-such-app", {"A": "1"})


def test_size_limit_leaves_state_unchanged(open_store):
    store = open_store(limits=Limits(config_bytes=100))
    owner = store.signup("o@example.com", "a-long-password")[0]
    app = store.create_app(owner, "tiny-app")
    store.set_config(owner, app.name, {"A": "x" * 50})
    with pytest.raises(TooLarge):
        store.set_config(owner, app.name, {"B": "y" * 50})
    with pytest.raises(TooLarge):  # replacing counts the new value, not both
        store.set_config(owner, app.name, {"A": "x" * 100})
    assert store.get_config(owner, app.name) == {"A": "x" * 50}
    store.set_config(owner, app.name, {"A": "x" * 99})  # 1 + 99 bytes: just fits
    assert store.get_config(owner, app.name) == {"A": "x" * 99}


def test_database_holds_no_plaintext_config(store, owner, app, live_app, tmp_path,
                                            database_url):
    store.set_config(owner, app.name, {"DATABASE_PASSWORD": SECRET})  # makes a release too
    raw = raw_database(store, tmp_path, database_url)
    assert b"DATABASE_PASSWORD" in raw  # names are not secret; the check sees the data
    assert SECRET.encode() not in raw
    assert SECRET[:16].encode() not in raw
    secrets = store.app_secrets(app)
    assert secrets.secret_key_base.encode() not in raw
    assert secrets.release_cookie.encode() not in raw
    assert store.get_config(owner, app.name)["DATABASE_PASSWORD"] == SECRET


def test_ciphertexts_are_bound_to_their_app(store, owner, app):
    other = store.create_app(owner, "other-app")
    store.set_config(owner, app.name, {"TOKEN": "for-demo-app-only"})
    store.set_config(owner, other.name, {"TOKEN": "placeholder"})
    with store.db.write() as conn:
        stolen = conn.execute(sa.select(db.config_vars.c.value_ct).where(
            db.config_vars.c.app_id == app.id)).scalar_one()
        conn.execute(db.config_vars.update().where(db.config_vars.c.app_id == other.id)
                     .values(value_ct=stolen))
    with pytest.raises(DecryptError):
        store.get_config(owner, other.name)


def test_secret_files_are_private(store, owner, tmp_path, database_url):
    assert (tmp_path / "data" / "master.keys").stat().st_mode & 0o777 == 0o600
    if database_url.startswith("sqlite"):
        assert (tmp_path / "shipway.db").stat().st_mode & 0o777 == 0o600


def test_master_key_from_settings(open_store, owner, tmp_path):
    import base64
    import os

    key = base64.b64encode(os.urandom(32)).decode()
    before = open_store()  # values sealed under the key file...
    before.create_app(owner, "file-key-app")
    before.set_config(owner, "file-key-app", {"OLD": "still readable"})
    store = open_store(master_key=key)
    # ...still open once the environment's key is the current one.
    assert store.get_config(owner, "file-key-app") == {"OLD": "still readable"}
    user = store.signup("k@example.com", "a-long-password")[0]
    store.create_app(user, "env-key-app")
    store.set_config(user, "env-key-app", {"A": "1"})
    assert open_store(master_key=key).get_config(user, "env-key-app") == {"A": "1"}
    with pytest.raises(BadRequest):
        open_store(master_key=key).rotate_master_key()
    with pytest.raises(ValueError):
        open_store(master_key="too-short")


def test_change_makes_and_deploys_a_release(store, owner, live_app, deployer):
    release = store.set_config(owner, live_app.name, {"FEATURE": "on"})
    assert release is not None and release.version == 2
    assert release.status == "succeeded"
    assert release.description == "Set FEATURE"
    assert release.created_by == owner.email
    assert release.process_types == {"web": "python app.py", "worker": "python worker.py"}
    assert deployer.deployed[-1] == (live_app.name, 2)
    assert deployer.status_during_deploy[-1] == "deploying"
    assert store.release_config(live_app, release) == {"FEATURE": "on"}
    unset = store.unset_config(owner, live_app.name, ["FEATURE"])
    assert unset.version == 3 and store.release_config(live_app, unset) == {}
    assert store.unset_config(owner, live_app.name, ["FEATURE"]) is None  # no change
    assert store.current_release(live_app).version == 3


def test_failed_deploy_keeps_config_and_marks_release(store, owner, live_app, deployer):
    deployer.fail_with = DeployFailed("injected: health check failed")
    with pytest.raises(DeployFailed):
        store.set_config(owner, live_app.name, {"BROKEN": "yes"})
    assert store.get_config(owner, live_app.name) == {"BROKEN": "yes"}
    assert store.get_release(live_app, 2).status == "failed"
    assert store.current_release(live_app).version == 1  # v1 keeps serving


def test_no_deployer_is_not_faked(store, owner, live_app, deployer):
    store._deployer = None  # as in a process where the runner is not wired
    with pytest.raises(Unavailable):
        store.set_config(owner, live_app.name, {"A": "1"})
    assert store.get_release(live_app, 2).status == "failed"
    store.set_deployer(deployer)
    deployer.fail_with = NotImplementedError("runner not built yet")
    with pytest.raises(NotImplementedError):
        store.set_config(owner, live_app.name, {"A": "2"})
    assert store.get_release(live_app, 3).status == "failed"
