"""Users, passwords and API keys at the service level (SQLite and PostgreSQL)."""
from __future__ import annotations

import pytest

from controller.errors import BadRequest, Conflict, Unauthorized


def test_signup_login_and_key(store):
    user, key = store.signup("  Alice@Example.COM ", "a-long-password")
    assert user.email == "alice@example.com"
    assert key.startswith("sw_") and len(key) > 40
    assert store.user_for_api_key(key) == user
    assert store.user_for_email_and_key("alice@example.com", key) == user
    # Login shows the same (current) key; the email is case-insensitive.
    assert store.login("ALICE@example.com", "a-long-password") == (user, key)


def test_wrong_credentials_are_unauthorized(store):
    store.signup("bob@example.com", "a-long-password")
    with pytest.raises(Unauthorized):
        store.login("bob@example.com", "wrong-password")
    with pytest.raises(Unauthorized):
        store.login("nobody@example.com", "a-long-password")
    with pytest.raises(Unauthorized):
        store.user_for_api_key("sw_not-a-key")
    with pytest.raises(Unauthorized):
        store.user_for_api_key("")


def test_key_belongs_to_its_email_only(store):
    a, key_a = store.signup("a@example.com", "a-long-password")
    store.signup("b@example.com", "a-long-password")
    with pytest.raises(Unauthorized):
        store.user_for_email_and_key("b@example.com", key_a)
    with pytest.raises(Unauthorized):
        store.user_for_email_and_key("nobody@example.com", key_a)


def test_reset_invalidates_old_key_at_once(store):
    user, old = store.signup("c@example.com", "a-long-password")
    new = store.reset_api_key(user)
    assert new != old
    with pytest.raises(Unauthorized):
        store.user_for_api_key(old)
    with pytest.raises(Unauthorized):
        store.user_for_email_and_key("c@example.com", old)
    assert store.user_for_api_key(new) == user
    assert store.login("c@example.com", "a-long-password")[1] == new


def test_keys_are_distinct_per_user(store):
    keys = {store.signup(f"u{i}@example.com", "a-long-password")[1] for i in range(5)}
    assert len(keys) == 5


@pytest.mark.parametrize("email", ["", "no-at-sign", "a@b", "two@@example.com",
                                   "sp ace@example.com", "x" * 250 + "@example.com", None, 42])
def test_invalid_email_is_refused_without_a_user(store, email):
    with pytest.raises(BadRequest):
        store.signup(email, "a-long-password")
    with pytest.raises(Unauthorized):
        store.login("a@example.com", "a-long-password")


@pytest.mark.parametrize("password", ["", "short", "1234567", None, 12345678])
def test_short_password_is_refused(store, password):
    with pytest.raises(BadRequest):
        store.signup("d@example.com", password)
    # No user was made: the email is still free.
    store.signup("d@example.com", "a-long-password")


def test_duplicate_email_conflicts(store):
    store.signup("e@example.com", "a-long-password")
    with pytest.raises(Conflict):
        store.signup("E@example.com", "another-password")


def test_database_holds_no_password_or_key(store, tmp_path, database_url):
    user, key = store.signup("f@example.com", "plain-text-password")
    if database_url.startswith("sqlite"):
        raw = b"".join(p.read_bytes() for p in (tmp_path).glob("shipway.db*"))
    else:
        import sqlalchemy as sa
        with store.db.engine.connect() as conn:
            raw = repr(conn.execute(sa.text("SELECT * FROM users")).all()).encode()
    assert b"f@example.com" in raw  # the check can see the table at all
    assert key.encode() not in raw
    assert key[3:].encode() not in raw
    assert b"plain-text-password" not in raw


def test_api_key_secret_file_is_private(store, tmp_path):
    secret = tmp_path / "data" / "api-key.secret"
    assert secret.stat().st_mode & 0o777 == 0o600


def test_keys_survive_reopen_and_depend_on_the_secret(open_store, store):
    user, key = store.signup("g@example.com", "a-long-password")
    assert open_store().user_for_api_key(key) == user
    other = open_store(api_key_secret="a-different-server-secret")
    with pytest.raises(Unauthorized):
        other.user_for_api_key(key)


def test_login_upgrades_an_old_password_hash(store):
    import argon2
    import sqlalchemy as sa

    from controller.db import users

    user, key = store.signup("h@example.com", "a-long-password")
    old_hash = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(
        "a-long-password")
    with store.db.write() as conn:
        conn.execute(users.update().where(users.c.id == user.id).values(password_hash=old_hash))
    assert store.login("h@example.com", "a-long-password") == (user, key)
    with store.db.read() as conn:
        new_hash = conn.execute(sa.select(users.c.password_hash)
                                .where(users.c.id == user.id)).scalar_one()
    assert new_hash != old_hash and "m=19456,t=2,p=1" in new_hash
    assert store.login("h@example.com", "a-long-password") == (user, key)
