"""Token signing keys shared by every node, and the one-time events table.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

Written by hand to match ``fhirbin.metadata.schema`` exactly (a test compares them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Keys are listed newest first by (created_at, kid): kid compares by code point everywhere.
    kid = sa.String(64).with_variant(sa.String(64, collation="C"), "postgresql")
    op.create_table(
        "signing_key",
        sa.Column("kid", kid, nullable=False),
        sa.Column("private_pem", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("kid", name="pk_signing_key"),
    )
    op.create_table(
        "catalogue_once",
        sa.Column("name", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_catalogue_once"),
    )


def downgrade() -> None:
    op.drop_table("catalogue_once")
    op.drop_table("signing_key")
