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


# Ids that listings order by or page through (keysets) compare by code point on every database:
# SQLite's BINARY collation does, and Python's str comparison (which merges pages) does. On
# PostgreSQL the database's default collation may be a language's (where "a" < "B"), so these
# columns use the "C" collation there (migration 0006).
def _ordered_id(length: int) -> String:
    return String(length).with_variant(String(length, collation="C"), "postgresql")


def _ordered_hash() -> CHAR:
    return CHAR(64).with_variant(CHAR(64, collation="C"), "postgresql")


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
    Column("id", _ordered_id(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    Column("content_type", Text, nullable=False),
    Column("security_context", Text, nullable=True),
    Column("size", BigInteger, nullable=False),
    Column("sha256", _ordered_hash(), nullable=True),  # NULL for a deletion marker
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
    Column("client_id", _ordered_id(64), nullable=False),
    Column("name", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("secret_hash", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
    # SMART Backend Services (private_key_jwt): the client's public JWK Set, by value (JSON
    # text) or by URL; a key client has an empty secret_hash.
    Column("jwks", Text, nullable=True),
    Column("jwks_url", Text, nullable=True),
    PrimaryKeyConstraint("client_id"),
)

# Client-assertion ids already used (RFC 7523 §3 item 7, SMART client-confidential-asymmetric:
# a jti is never accepted twice within the assertion's lifetime). In the database so replays are
# refused across restarts and across server nodes.
assertion_jti = Table(
    "assertion_jti",
    metadata,
    Column("issuer", String(64), nullable=False),
    Column("jti", String(255), nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("issuer", "jti"),
    Index("ix_assertion_jti_expires_at", "expires_at"),
)

# FHIR AuditEvent records (Basic Audit Log Patterns): who, what, when, from where, outcome.
# Never content bytes, never tokens.
audit_event = Table(
    "audit_event",
    metadata,
    Column("id", _ordered_id(64), nullable=False),
    Column("recorded", BigInteger, nullable=False),
    Column("action", CHAR(1), nullable=False),
    Column("subtype", String(32), nullable=False),
    Column("outcome", String(2), nullable=False),
    Column("status", Integer, nullable=False),
    Column("client_id", String(255), nullable=True),
    Column("subject", Text, nullable=True),
    Column("source", Text, nullable=True),
    Column("entity", String(128), nullable=True),
    Column("entity_version", Integer, nullable=True),
    Column("query", Text, nullable=True),
    Column("bytes_sent", BigInteger, nullable=True),
    Column("detail", Text, nullable=True),
    Column("request_id", String(128), nullable=True),
    Column("patient", String(255), nullable=True),  # migration 0005
    PrimaryKeyConstraint("id"),
    Index("ix_audit_event_entity_recorded", "entity", "recorded"),
    Index("ix_audit_event_recorded", "recorded"),
)

# Token signing keys, shared by every node (migration 0007). Newest first by created_at.
signing_key = Table(
    "signing_key",
    metadata,
    Column("kid", _ordered_id(64), nullable=False),
    Column("private_pem", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("kid"),
)

# One-time events, by name, that must happen once across all nodes (migration 0007): the
# primary key lets exactly one of several racing transactions record one. "first signing key":
# the node whose transaction records it is the one that stores the first key.
catalogue_once = Table(
    "catalogue_once",
    metadata,
    Column("name", String(64), nullable=False),
    PrimaryKeyConstraint("name"),
)

# Ids whose versions were all erased by $expunge (migration 0008), with the highest version
# number they had: numbering continues after it, so an (id, version) pair never names two
# different contents (docs/decisions.md#expunge).
expunged = Table(
    "expunged",
    metadata,
    Column("id", _ordered_id(64), nullable=False),
    Column("last_version", Integer, nullable=False),
    PrimaryKeyConstraint("id"),
)
