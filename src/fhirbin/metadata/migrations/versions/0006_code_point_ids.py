"""PostgreSQL: ids that listings order by compare by code point (the "C" collation).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

Search and history page by keysets over (last_updated, id), the audit trail over (recorded,
id), and the store merges pages in Python, which compares strings by code point as SQLite does.
PostgreSQL compares text by the database's collation, which for most locales puts "a" before
"B": pages would skip or repeat rows. This gives those columns the "C" collation on PostgreSQL
(their indexes are rebuilt with them). SQLite needs nothing: it changes no table there.

Written by hand to match ``fhirbin.metadata.schema`` exactly (a test compares them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

# (table, column, type, length)
_COLUMNS: list[tuple[str, str, type[sa.String], int]] = [
    ("binary_version", "id", sa.String, 64),
    ("binary_version", "sha256", sa.CHAR, 64),
    ("client", "client_id", sa.String, 64),
    ("audit_event", "id", sa.String, 64),
]


def _collate(collation: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column, kind, length in _COLUMNS:
        collated = kind(length, collation=collation)
        op.alter_column(table, column, type_=collated, existing_type=kind(length))


def upgrade() -> None:
    _collate("C")


def downgrade() -> None:
    _collate("default")
