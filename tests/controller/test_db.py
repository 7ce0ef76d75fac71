"""The database layer: migrations to head, URL mapping, concurrent writers
racing for limits and uniqueness."""
from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa
from alembic.script import ScriptDirectory

from controller.db import engine_url
from controller.errors import BadRequest, Conflict
from controller.migrations import SCRIPTS, alembic_config
from core.settings import Limits


def test_url_mapping():
    assert engine_url("postgresql://u@h:5/db") == "postgresql+psycopg://u@h:5/db"
    assert engine_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert engine_url("sqlite:///x.db") == "sqlite:///x.db"


def test_migrations_ship_inside_the_package():
    import controller

    assert SCRIPTS.parent == Path(controller.__file__).resolve().parent
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() is not None


def test_schema_is_at_head_and_reopen_is_a_no_op(store, open_store):
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with store.db.read() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == head
    open_store()
    with store.db.read() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar_one() == 1


def race(n, fn):
    results, errors = [], []
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        try:
            results.append(fn(i))
        except Exception as e:  # noqa: BLE001 - collected for the assertions
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results, errors


def test_concurrent_signups_of_one_email(store):
    results, errors = race(6, lambda i: store.signup("same@example.com", "a-long-password"))
    assert len(results) == 1
    assert len(errors) == 5 and all(isinstance(e, Conflict) for e in errors)


def test_app_limit_holds_under_concurrency(open_store):
    store = open_store(limits=Limits(apps_per_user=3))
    user = store.signup("racer@example.com", "a-long-password")[0]
    results, errors = race(8, lambda i: store.create_app(user, f"race-app-{i}"))
    assert len(results) == 3
    assert all(isinstance(e, BadRequest) for e in errors) and len(errors) == 5
    assert len(store.list_apps(user)) == 3


def test_one_name_one_app_under_concurrency(store):
    users = [store.signup(f"n{i}@example.com", "a-long-password")[0] for i in range(4)]
    results, errors = race(4, lambda i: store.create_app(users[i], "contested"))
    assert len(results) == 1 and all(isinstance(e, Conflict) for e in errors)
    assert store.app_by_name("contested").owner_id == results[0].owner_id


def test_concurrent_domain_claims(store, owner):
    count = 6
    apps = [store.create_app(owner, f"domain-app-{i}") for i in range(count)]
    results, errors = race(count, lambda i: store.add_domain(owner, apps[i].name,
                                                             "shared.example.com"))
    assert len(results) == 1 and all(isinstance(e, Conflict) for e in errors)


def test_concurrent_first_opens_agree_on_one_schema(open_store):
    """Several processes (here: threads with their own engines) opening a
    new database at once: one migrates, the others find it at head."""
    results, errors = race(4, lambda i: open_store())
    assert errors == [] and len(results) == 4
    user = results[0].signup("first@example.com", "a-long-password")[0]
    assert results[3].user_by_email("first@example.com") == user


def test_upgrade_from_the_first_schema_keeps_apps_and_slugs(database_url):
    """A database made by an older Shipway (revision 0001) with an app and a
    slug in it migrates to head; the slug keeps its data and has no
    unpacked size, the app has no replica size. A downgrade back leaves the
    app, its slug and the release that runs it linked."""
    from alembic import command

    from controller.db import Database
    from controller.migrations import migrate

    db = Database(database_url)
    try:
        cfg = alembic_config()
        with db.engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
            conn.execute(sa.text(
                "INSERT INTO users (id, email, password_hash, api_key_salt, api_key_hash, "
                "created_at) VALUES (1, 'old@example.com', 'x', 's', 'h', CURRENT_TIMESTAMP)"))
            conn.execute(sa.text(
                "INSERT INTO apps (id, name, owner_id, created_at) "
                "VALUES (1, 'old', 1, CURRENT_TIMESTAMP)"))
            conn.execute(sa.text(
                "INSERT INTO slugs (id, app_id, storage_key, sha256, size, \"commit\", "
                "process_types, buildpacks, created_at) VALUES (7, 1, 'old/a.tgz', 'ab', 10, "
                "'c0', '{}', '[]', CURRENT_TIMESTAMP)"))
            conn.execute(sa.text(
                "INSERT INTO releases (app_id, version, slug_id, process_types, description, "
                "status, created_by, config_ct, created_at) VALUES (1, 1, 7, '{}', 'd', "
                "'succeeded', 'old@example.com', 'x', CURRENT_TIMESTAMP)"))
            conn.commit()
        migrate(db)
        with db.read() as conn:
            row = conn.execute(sa.text("SELECT storage_key, size, unpacked_size FROM slugs")).one()
        assert tuple(row) == ("old/a.tgz", 10, None)
        with db.read() as conn:
            row = conn.execute(sa.text("SELECT name, replica_size FROM apps")).one()
        assert tuple(row) == ("old", None)
        with db.engine.connect() as conn:
            if db.is_sqlite:  # as the server's own connections have it
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0001")
            conn.commit()
            assert conn.execute(sa.text("SELECT slug_id FROM releases")).scalar_one() == 7
            assert conn.execute(sa.text("SELECT count(*) FROM slugs")).scalar_one() == 1
            assert conn.execute(sa.text("SELECT name FROM apps")).scalar_one() == "old"
    finally:
        db.dispose()


def test_release_hot_mark_migrates_up_and_down(database_url):
    """0009 adds `releases.hot` (issue 17): releases made before it count as
    restarts; a downgrade drops the column and keeps the releases."""
    from alembic import command

    from controller.db import Database
    from controller.migrations import migrate

    db = Database(database_url)
    try:
        cfg = alembic_config()
        with db.engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0007")
            conn.execute(sa.text(
                "INSERT INTO users (id, email, password_hash, api_key_salt, api_key_hash, "
                "created_at) VALUES (1, 'old@example.com', 'x', 's', 'h', CURRENT_TIMESTAMP)"))
            conn.execute(sa.text(
                "INSERT INTO apps (id, name, owner_id, created_at) "
                "VALUES (1, 'old', 1, CURRENT_TIMESTAMP)"))
            conn.execute(sa.text(
                "INSERT INTO releases (app_id, version, process_types, description, "
                "status, created_by, config_ct, created_at) VALUES (1, 1, '{}', 'd', "
                "'succeeded', 'old@example.com', 'x', CURRENT_TIMESTAMP)"))
            conn.commit()
        migrate(db)
        with db.write() as conn:
            assert conn.execute(sa.text("SELECT hot FROM releases")).scalar_one() in (False, 0)
            conn.execute(sa.text("UPDATE releases SET hot = :hot"), {"hot": True})
        with db.engine.connect() as conn:
            if db.is_sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0007")
            conn.commit()
            columns = {c["name"] for c in sa.inspect(conn).get_columns("releases")}
            assert "hot" not in columns and "status" in columns
            assert conn.execute(sa.text("SELECT version FROM releases")).scalar_one() == 1
    finally:
        db.dispose()
