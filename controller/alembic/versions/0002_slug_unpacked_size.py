"""Slugs record what they unpack to (the runner sizes a replica's in-memory
/app by it).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("slugs") as batch:
        batch.add_column(sa.Column("unpacked_size", sa.BigInteger, nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite >= 3.35 has it): a batch rebuild of slugs
    # would drop the table, which sets every release's slug_id to NULL.
    op.execute("ALTER TABLE slugs DROP COLUMN unpacked_size")
