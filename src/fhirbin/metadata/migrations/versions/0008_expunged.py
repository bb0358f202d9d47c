"""Ids erased by $expunge and the highest version number each had.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

Written by hand to match ``fhirbin.metadata.schema`` exactly (a test compares them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    binary_id = sa.String(64).with_variant(sa.String(64, collation="C"), "postgresql")
    op.create_table(
        "expunged",
        sa.Column("id", binary_id, nullable=False),
        sa.Column("last_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_expunged"),
    )


def downgrade() -> None:
    op.drop_table("expunged")
