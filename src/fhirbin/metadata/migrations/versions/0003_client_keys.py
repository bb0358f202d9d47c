"""SMART Backend Services: client JWK Sets and the seen-assertion-id store.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

Written by hand to match ``fhirbin.metadata.schema`` exactly (a test compares them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("client") as batch:
        batch.add_column(sa.Column("jwks", sa.Text(), nullable=True))
        batch.add_column(sa.Column("jwks_url", sa.Text(), nullable=True))
    op.create_table(
        "assertion_jti",
        sa.Column("issuer", sa.String(64), nullable=False),
        sa.Column("jti", sa.String(255), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("issuer", "jti", name="pk_assertion_jti"),
    )
    op.create_index("ix_assertion_jti_expires_at", "assertion_jti", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_assertion_jti_expires_at", table_name="assertion_jti")
    op.drop_table("assertion_jti")
    with op.batch_alter_table("client") as batch:
        batch.drop_column("jwks_url")
        batch.drop_column("jwks")
