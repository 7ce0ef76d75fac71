"""Maintenance mode and canaries (issue 16, item 5): one row per app that
has either, read back into the router after it (or the server) restarts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "route_overlays",
        sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("maintenance", sa.Boolean, nullable=False, server_default=sa.false()),
        # The app that gets canary_weight % of this app's requests (NULL: none).
        sa.Column("canary_app_id", sa.Integer, sa.ForeignKey("apps.id", ondelete="SET NULL"),
                  nullable=True, index=True),
        sa.Column("canary_weight", sa.Integer, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("route_overlays")
