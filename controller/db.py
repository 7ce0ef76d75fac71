"""The schema (SQLAlchemy Core tables) and the engine: SQLite or PostgreSQL.

The tables here describe the schema at the newest migration; the migrations
in `controller/alembic/versions/` are what actually create and change it, and
`migrate()` runs them to head on every open so an upgraded Shipway upgrades
its database by itself.

Transactions: `Database.write()` takes the write lock up front (SQLite
`BEGIN IMMEDIATE`), so two threads never deadlock upgrading a read lock, and
the busy timeout makes a second writer wait instead of failing.
"""
from __future__ import annotations

import contextlib
import os
import datetime as dt
from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

metadata = sa.MetaData()


class UTCDateTime(sa.TypeDecorator):
    """Stores naive UTC, returns aware UTC (SQLite has no time zones)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return value.replace(tzinfo=dt.timezone.utc) if value is not None else None


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def advisory_lock(conn: Connection, key: str) -> None:
    """Serialise, until the transaction ends, the writers that take the same
    `key` on PostgreSQL (for checks that row locks cannot cover: rows that
    do not exist yet, or counts). SQLite's write transaction is exclusive
    already: nothing to take there."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


def _fk(target: str) -> sa.ForeignKey:
    return sa.ForeignKey(target, ondelete="CASCADE")


users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(254), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    # The key itself is HMAC(server secret, "<id>:<salt>"): only the salt and
    # a SHA-256 of the key are stored, so a database leak alone reveals none.
    sa.Column("api_key_salt", sa.String(64), nullable=False),
    sa.Column("api_key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

ssh_keys = sa.Table(
    "ssh_keys", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, _fk("users.id"), nullable=False, index=True),
    sa.Column("fingerprint", sa.String(100), nullable=False, unique=True),
    sa.Column("key_type", sa.String(64), nullable=False),
    sa.Column("public_key", sa.Text, nullable=False),
    sa.Column("comment", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

apps = sa.Table(
    "apps", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(63), nullable=False, unique=True),
    sa.Column("owner_id", sa.Integer, _fk("users.id"), nullable=False, index=True),
    # The last release version handed out: bumped under the row lock, so
    # versions are never reused even after releases are deleted.
    sa.Column("last_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("secrets_ct", sa.Text, nullable=True),  # encrypted AppSecrets
    # Each replica's size (ps:scale --size): GiB of memory and CPUs; NULL
    # runs the server's defaults (run_memory, run_cpus).
    sa.Column("replica_size", sa.Float, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

collaborators = sa.Table(
    "collaborators", metadata,
    sa.Column("app_id", sa.Integer, _fk("apps.id"), primary_key=True),
    sa.Column("user_id", sa.Integer, _fk("users.id"), primary_key=True, index=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

config_vars = sa.Table(
    "config_vars", metadata,
    sa.Column("app_id", sa.Integer, _fk("apps.id"), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("value_ct", sa.Text, nullable=False),
    sa.Column("size", sa.Integer, nullable=False),  # plaintext bytes (name + value)
)

slugs = sa.Table(
    "slugs", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("app_id", sa.Integer, _fk("apps.id"), nullable=False, index=True),
    sa.Column("storage_key", sa.String(1024), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("commit", sa.String(64), nullable=False),
    sa.Column("process_types", sa.JSON, nullable=False),
    sa.Column("buildpacks", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # What the slug unpacks to (its tar's bytes); unknown for older slugs.
    sa.Column("unpacked_size", sa.BigInteger, nullable=True),
    # Set when the slug's file was pruned from the store (controller/slug_pruning.py).
    sa.Column("pruned_at", UTCDateTime, nullable=True),
)

releases = sa.Table(
    "releases", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("app_id", sa.Integer, _fk("apps.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("slug_id", sa.Integer, sa.ForeignKey("slugs.id", ondelete="SET NULL"),
              nullable=True),
    sa.Column("commit", sa.String(64), nullable=True),
    sa.Column("process_types", sa.JSON, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_by", sa.String(254), nullable=False),
    sa.Column("config_ct", sa.Text, nullable=False),  # encrypted config snapshot
    sa.Column("created_at", UTCDateTime, nullable=False),
    # Went live hot: the running replicas upgraded in place (issue 17).
    sa.Column("hot", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("app_id", "version", name="uq_releases_app_version"),
)

formations = sa.Table(
    "formations", metadata,
    sa.Column("app_id", sa.Integer, _fk("apps.id"), primary_key=True),
    sa.Column("process_type", sa.String(63), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
)

domains = sa.Table(
    "domains", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("app_id", sa.Integer, _fk("apps.id"), nullable=False, index=True),
    sa.Column("hostname", sa.String(253), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # NULL while a SHIPWAY_DOMAIN_VERIFY=dns challenge is open: not routed.
    sa.Column("verified_at", UTCDateTime, nullable=True),
)

builds = sa.Table(
    "builds", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("app_id", sa.Integer, _fk("apps.id"), nullable=False, index=True),
    sa.Column("ref", sa.String(255), nullable=False),
    sa.Column("commit", sa.String(64), nullable=False),
    sa.Column("user_email", sa.String(254), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("output", sa.Text, nullable=False),
    sa.Column("release_version", sa.Integer, nullable=True),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
)


def engine_url(url: str) -> str:
    """Map `postgresql://` to the psycopg 3 driver SQLAlchemy should use."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str) -> Engine:
    url = engine_url(url)
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            # Owner-only, like the key files (SQLite gives -wal/-shm the same mode).
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                                  pool_size=8, max_overflow=16)
        _configure_sqlite(engine)
        return engine
    return sa.create_engine(url, pool_size=8, max_overflow=16, pool_pre_ping=True)


def _configure_sqlite(engine: Engine) -> None:
    """WAL lets readers run beside the writer; we issue BEGIN ourselves so a
    write transaction can take its lock up front (pysqlite would defer it)."""

    @sa.event.listens_for(engine, "connect")
    def on_connect(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("shipway_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Database:
    """The engine plus the two kinds of transaction the service layer uses."""

    def __init__(self, url: str) -> None:
        self.url = engine_url(url)
        self.engine = make_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn = conn.execution_options(shipway_write=True)
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        self.engine.dispose()
