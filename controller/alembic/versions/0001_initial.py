"""The first schema: users, keys, apps, access, config, slugs, releases,
formation, domains, builds.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""
from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _fk(target: str) -> sa.ForeignKey:
    return sa.ForeignKey(target, ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(254), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("api_key_salt", sa.String(64), nullable=False),
        sa.Column("api_key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "ssh_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, _fk("users.id"), nullable=False, index=True),
        sa.Column("fingerprint", sa.String(100), nullable=False, unique=True),
        sa.Column("key_type", sa.String(64), nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("comment", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "apps",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("owner_id", sa.Integer, _fk("users.id"), nullable=False, index=True),
        sa.Column("last_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("secrets_ct", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "collaborators",
        sa.Column("app_id", sa.Integer, _fk("apps.id"), primary_key=True),
        sa.Column("user_id", sa.Integer, _fk("users.id"), primary_key=True, index=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "config_vars",
        sa.Column("app_id", sa.Integer, _fk("apps.id"), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("value_ct", sa.Text, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
    )
    op.create_table(
        "slugs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("app_id", sa.Integer, _fk("apps.id"), nullable=False, index=True),
        sa.Column("storage_key", sa.String(1024), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("commit", sa.String(64), nullable=False),
        sa.Column("process_types", sa.JSON, nullable=False),
        sa.Column("buildpacks", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("app_id", sa.Integer, _fk("apps.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("slug_id", sa.Integer, sa.ForeignKey("slugs.id", ondelete="SET NULL"),
                  nullable=True),
        sa.Column("commit", sa.String(64), nullable=True),
        sa.Column("process_types", sa.JSON, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(254), nullable=False),
        sa.Column("config_ct", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("app_id", "version", name="uq_releases_app_version"),
    )
    op.create_table(
        "formations",
        sa.Column("app_id", sa.Integer, _fk("apps.id"), primary_key=True),
        sa.Column("process_type", sa.String(63), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_table(
        "domains",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("app_id", sa.Integer, _fk("apps.id"), nullable=False, index=True),
        sa.Column("hostname", sa.String(253), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "builds",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("app_id", sa.Integer, _fk("apps.id"), nullable=False, index=True),
        sa.Column("ref", sa.String(255), nullable=False),
        sa.Column("commit", sa.String(64), nullable=False),
        sa.Column("user_email", sa.String(254), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("output", sa.Text, nullable=False),
        sa.Column("release_version", sa.Integer, nullable=True),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=True),
    )


def downgrade() -> None:
    for table in ("builds", "domains", "formations", "releases", "slugs", "config_vars",
                  "collaborators", "apps", "ssh_keys", "users"):
        op.drop_table(table)
