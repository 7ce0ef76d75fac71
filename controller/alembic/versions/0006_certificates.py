"""Certificates from ACME (issue 16): one row per hostname with its status,
chain and key encrypted with the keyring, validity, the last error and the
retry schedule; one ACME account key per directory.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "certificates",
        sa.Column("hostname", sa.String(253), primary_key=True),
        sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id", ondelete="CASCADE"),
                  nullable=True, index=True),  # NULL: the platform's own --public-host
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("fullchain_ct", sa.Text, nullable=True),
        sa.Column("key_ct", sa.Text, nullable=True),
        sa.Column("not_before", sa.DateTime, nullable=True),
        sa.Column("not_after", sa.DateTime, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime, nullable=True),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "acme_accounts",
        sa.Column("directory", sa.String(500), primary_key=True),
        sa.Column("key_ct", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("acme_accounts")
    op.drop_table("certificates")
