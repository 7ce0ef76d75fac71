"""Activity and deploy webhooks (issue 18 items 5 and 7): one row per action
on an app (who, what, a summary and the names involved, never config
values); one row per webhook URL with its secret encrypted by the keyring.

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "activity",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("actor", sa.String(254), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("summary", sa.String(500), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "webhooks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("secret_ct", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(254), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("app_id", "url", name="uq_webhooks_app_url"),
    )


def downgrade() -> None:
    op.drop_table("webhooks")
    op.drop_table("activity")
