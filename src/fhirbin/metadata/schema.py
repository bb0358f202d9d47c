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
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    false,
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
    # The unique (id, version) key is the optimistic-concurrency guarantee: of two writers
    # adding the same version, the database lets exactly one commit.
    PrimaryKeyConstraint("id", "version"),
    Index("ix_binary_version_last_updated", "last_updated"),
    # Lets garbage collection find blobs no version refers to any more.
    Index("ix_binary_version_sha256", "sha256"),
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
