"""Current versions: an ``is_current`` flag and the indexes search and history read in order.

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-27

Search lists the current, non-deleted version of each id by (last_updated, id). Finding "the
highest version of its id" at read time costs a probe per row scanned and makes a count walk
every matching row; a flag kept by the writer turns both into reads of one partial index. The
single-column last_updated index becomes (last_updated, id, version), history's exact order.

Written by hand to match ``fhirbin.metadata.schema`` exactly (a test compares them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

# The table as this revision sees it: revisions must not import the live schema, which moves on.
_version = sa.table(
    "binary_version",
    sa.column("id", sa.String()),
    sa.column("version", sa.Integer()),
    sa.column("is_current", sa.Boolean()),
)

# Rendered per dialect (``= 1`` on SQLite, ``= true`` on PostgreSQL), exactly as the store's
# queries render them: SQLite only uses a partial index whose terms the query repeats.
_LIVE = sa.and_(
    sa.column("is_current", sa.Boolean()) == sa.true(),
    sa.column("deleted", sa.Boolean()) == sa.false(),
)


def upgrade() -> None:
    op.add_column(
        "binary_version",
        sa.Column("is_current", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    newer = _version.alias("newer")
    has_newer = sa.exists().where(newer.c.id == _version.c.id, newer.c.version > _version.c.version)
    op.execute(sa.update(_version).where(~has_newer).values(is_current=sa.true()))
    op.drop_index("ix_binary_version_last_updated", table_name="binary_version")
    op.create_index(
        "ix_binary_version_last_updated_id_version",
        "binary_version",
        ["last_updated", "id", "version"],
    )
    op.create_index(
        "ix_binary_version_live",
        "binary_version",
        ["last_updated", "id"],
        sqlite_where=_LIVE,
        postgresql_where=_LIVE,
    )


def downgrade() -> None:
    op.drop_index("ix_binary_version_live", table_name="binary_version")
    op.drop_index("ix_binary_version_last_updated_id_version", table_name="binary_version")
    op.create_index("ix_binary_version_last_updated", "binary_version", ["last_updated"])
    # Batch mode: SQLite before 3.35 cannot drop a column, so Alembic rebuilds the table there.
    with op.batch_alter_table("binary_version") as batch:
        batch.drop_column("is_current")
