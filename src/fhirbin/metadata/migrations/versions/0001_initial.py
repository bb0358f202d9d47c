"""Initial catalogue: Binary versions and OAuth2 clients.

Revision ID: 0001
Revises:
Create Date: 2025-11-26

Written by hand to match ``fhirbin.metadata.schema`` exactly (a test compares them). Timestamps
are BIGINT microseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "binary_version",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("security_context", sa.Text(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.CHAR(64), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("id", "version", name="pk_binary_version"),
    )
    op.create_index("ix_binary_version_last_updated", "binary_version", ["last_updated"])
    op.create_index("ix_binary_version_sha256", "binary_version", ["sha256"])
    op.create_table(
        "client",
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("secret_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("client_id", name="pk_client"),
    )


def downgrade() -> None:
    op.drop_table("client")
    op.drop_index("ix_binary_version_sha256", table_name="binary_version")
    op.drop_index("ix_binary_version_last_updated", table_name="binary_version")
    op.drop_table("binary_version")
