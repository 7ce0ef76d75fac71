"""Run the Alembic migrations kept inside this package up to head.

The scripts are found next to this module (not via an alembic.ini in the
working directory), so an installed Shipway migrates its own database on
open. PostgreSQL serialises concurrent openers with an advisory lock.
"""
from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from controller.db import Database

SCRIPTS = Path(__file__).resolve().parent / "alembic"
_PG_LOCK_ID = 0x5348_4950  # "SHIP"
# Alembic keeps the running migration context in a module global, so two
# threads of one process must not migrate at once.
_THREAD_LOCK = threading.Lock()


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPTS))
    return cfg


def migrate(db: Database) -> None:
    """Bring the schema to the newest revision (a no-op when it is there)."""
    cfg = alembic_config()
    with _THREAD_LOCK, db.engine.connect() as conn:
        if db.is_sqlite:
            # BEGIN IMMEDIATE: a second process opening a new database waits,
            # then finds the schema at head, instead of racing to create it.
            conn = conn.execution_options(shipway_write=True)
        else:
            conn.execute(sa.text("SELECT pg_advisory_lock(:id)"), {"id": _PG_LOCK_ID})
            conn.commit()
        try:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
        finally:
            if not db.is_sqlite:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:id)"), {"id": _PG_LOCK_ID})
                conn.commit()
