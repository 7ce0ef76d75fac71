"""certs:auto:refresh is also bounded per ACME account (issue 16): one row
per name a user refreshed, with the account's directory, the refreshed
app's owner (whose share of the hour it uses) and when, so every server
process on the database counts the same rolling hour. No foreign key to
apps or users: deleting an app or its owner must not give its refreshes back.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "certificate_refreshes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("directory", sa.String(500), nullable=False),
        sa.Column("owner_id", sa.Integer, nullable=False),
        sa.Column("hostname", sa.String(253), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_certificate_refreshes_directory_at", "certificate_refreshes",
                    ["directory", "at"])
    op.create_index("ix_certificate_refreshes_owner_id_at", "certificate_refreshes",
                    ["owner_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_certificate_refreshes_owner_id_at", "certificate_refreshes")
    op.drop_index("ix_certificate_refreshes_directory_at", "certificate_refreshes")
    op.drop_table("certificate_refreshes")
