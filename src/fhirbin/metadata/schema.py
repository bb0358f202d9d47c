"""The catalogue's tables: the single definition every query is built from.

Migrations (``migrations/versions``) are written out explicitly and must produce exactly this
schema; a test compares the two. Timestamps are BIGINT microseconds since the Unix epoch (UTC):
exact, sortable and identical on SQLite and PostgreSQL, unlike their native datetime types.
"""

from __future__ import annotations

from sqlalchemy import (
    CHAR,
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    and_,
    false,
    true,
)

# Deterministic constraint names, so later migrations can refer to them on every database.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

binary_version = Table(
    "binary_version",
    metadata,
    Column("id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    Column("content_type", Text, nullable=False),
    Column("security_context", Text, nullable=True),
    Column("size", BigInteger, nullable=False),
    Column("sha256", CHAR(64), nullable=True),  # NULL for a deletion marker
    Column("deleted", Boolean, nullable=False, server_default=false()),
    # True on the highest version of each id only; set in the transaction that adds a version
    # (``queries.settle_current``), so reads find current rows without comparing versions.
    Column("is_current", Boolean, nullable=False, server_default=false()),
    # The unique (id, version) key is the optimistic-concurrency guarantee: of two writers
    # adding the same version, the database lets exactly one commit.
    PrimaryKeyConstraint("id", "version"),
    # History's order, newest first, read straight off the index (no sort, stops at the limit).
    Index("ix_binary_version_last_updated_id_version", "last_updated", "id", "version"),
    # Lets garbage collection find blobs no version refers to any more.
    Index("ix_binary_version_sha256", "sha256"),
)

# Current and not a deletion marker: what search sees. Queries must repeat these exact terms:
# SQLite uses a partial index only when the query's WHERE contains the index's WHERE terms.
LIVE: ColumnElement[bool] = and_(
    binary_version.c.is_current == true(), binary_version.c.deleted == false()
)

# Search's order over live rows only: a page is a range read of this index, and a count reads
# nothing else.
Index(
    "ix_binary_version_live",
    binary_version.c.last_updated,
    binary_version.c.id,
    sqlite_where=LIVE,
    postgresql_where=LIVE,
)

client = Table(
    "client",
    metadata,
    Column("client_id", String(64), nullable=False),
    Column("name", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("secret_hash", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
    PrimaryKeyConstraint("client_id"),
)
