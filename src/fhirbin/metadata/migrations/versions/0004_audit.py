"""AuditEvent records.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

Written by hand to match ``fhirbin.metadata.schema`` exactly (a test compares them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "audit_event",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("recorded", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.CHAR(1), nullable=False),
        sa.Column("subtype", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(2), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(255), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("entity", sa.String(128), nullable=True),
        sa.Column("entity_version", sa.Integer(), nullable=True),
        sa.Column("query", sa.Text(), nullable=True),
        sa.Column("bytes_sent", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_event"),
    )
    op.create_index("ix_audit_event_entity_recorded", "audit_event", ["entity", "recorded"])
    op.create_index("ix_audit_event_recorded", "audit_event", ["recorded"])


def downgrade() -> None:
    op.drop_index("ix_audit_event_recorded", table_name="audit_event")
    op.drop_index("ix_audit_event_entity_recorded", table_name="audit_event")
    op.drop_table("audit_event")
