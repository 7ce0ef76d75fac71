"""Alembic environment: runs on the connection `controller.migrations`
hands over (never from a URL in an ini file)."""
from __future__ import annotations

from alembic import context

from controller.db import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
