"""Log drains (issue 18 item 4): one row per drain of an app, its URL
encrypted with the keyring (it may carry credentials).

Revision ID: 0007
Revises: 0008 (the activity and webhooks migration was numbered first)
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa

revision = "0007"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drains",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("url_ct", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("drains")
