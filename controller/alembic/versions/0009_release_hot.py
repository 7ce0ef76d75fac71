"""Releases record whether they went live hot (issue 17): a push with the
hot-upgrade header that upgraded the running replicas in place, rather
than a restart deploy (also a hot push's fallback). `releases` shows it;
releases made before this were all counted as restarts.

Revision ID: 0009
Revises: 0007 (the head: 0006, 0008, 0007)
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("releases") as batch:
        batch.add_column(sa.Column("hot", sa.Boolean, nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    # A plain DROP COLUMN, as in 0004 (no batch rebuild of a table other
    # tables refer to); SQLite 3.35+ and PostgreSQL both have it.
    op.execute("ALTER TABLE releases DROP COLUMN hot")
