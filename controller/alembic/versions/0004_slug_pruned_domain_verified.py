"""Slugs record when they were pruned from the store (the row and the
releases that name it stay: history); domains record when their owner
proved them (SHIPWAY_DOMAIN_VERIFY=dns), existing ones count as proven.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("slugs") as batch:
        batch.add_column(sa.Column("pruned_at", sa.DateTime, nullable=True))
    with op.batch_alter_table("domains") as batch:
        batch.add_column(sa.Column("verified_at", sa.DateTime, nullable=True))
    # Names added before verification existed were routed: keep them so.
    op.execute("UPDATE domains SET verified_at = created_at")


def downgrade() -> None:
    # Plain DROP COLUMNs, as in 0002 and 0003 (no batch rebuild of a table
    # other tables refer to).
    op.execute("ALTER TABLE domains DROP COLUMN verified_at")
    op.execute("ALTER TABLE slugs DROP COLUMN pruned_at")
