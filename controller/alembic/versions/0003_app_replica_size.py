"""Apps record the size of their replicas (ps:scale --size).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("apps") as batch:
        batch.add_column(sa.Column("replica_size", sa.Float, nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN, as in 0002: a batch rebuild of apps would drop the
    # table every other table refers to.
    op.execute("ALTER TABLE apps DROP COLUMN replica_size")
