"""SQLite hot paths that bypass the async driver: the current-version read and audit batches.

The read: one indexed query, run synchronously on the event loop.

Reading the current version of one id is a primary-key probe that SQLite answers in a few
microseconds. Through the async driver (aiosqlite) it costs a thread hop, a queue round trip
and SQLAlchemy's statement machinery: measured at 0.6 k reads/s against 14 k/s for a route
without a query (bench/, 2 cores). So the store keeps one plain ``sqlite3`` connection per
process for this query alone, used only from the event loop's thread: in WAL mode readers
never wait for writers, and a committed write by any process is visible to the next read.

Audit batches (hundreds of rows every 0.2 s under load) go through a second plain connection
with one ``executemany`` in one transaction, called from a worker thread: through SQLAlchemy
and aiosqlite the same batch cost the event loop milliseconds of parameter processing and
thread hand-offs, which showed as a p99 of 100+ ms on small reads.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from fhirbin.metadata.audit_sql import audit_values
from fhirbin.metadata.base import AuditRecord, BinaryVersion
from fhirbin.metadata.times import from_micros

_NEWEST = (
    "SELECT id, version, last_updated, content_type, security_context, size, sha256, deleted "
    "FROM binary_version WHERE id = ? ORDER BY version DESC LIMIT 1"
)


class SqliteReader:
    def __init__(self, path: Path) -> None:
        # Read-only: this connection never takes a write lock. A short busy timeout: in WAL
        # mode a reader only waits while a crashed writer's WAL is being recovered.
        uri = f"{path.resolve().as_uri()}?mode=ro"
        self._connection = sqlite3.connect(
            uri, uri=True, timeout=1.0, check_same_thread=False, isolation_level=None
        )
        self._connection.execute("PRAGMA query_only = ON")

    def newest(self, binary_id: str) -> BinaryVersion | None:
        row = self._connection.execute(_NEWEST, (binary_id,)).fetchone()
        if row is None:
            return None
        return BinaryVersion(
            id=row[0],
            version=row[1],
            last_updated=from_micros(row[2]),
            content_type=row[3],
            security_context=row[4],
            size=row[5],
            sha256=row[6],
            deleted=bool(row[7]),
        )

    def close(self) -> None:
        self._connection.close()


_AUDIT_COLUMNS = (
    "id", "recorded", "action", "subtype", "outcome", "status", "client_id", "subject",
    "patient", "source", "entity", "entity_version", "query", "bytes_sent", "detail",
    "request_id",
)  # fmt: skip
_INSERT_AUDIT = (
    "INSERT INTO audit_event (id, recorded, action, subtype, outcome, status, client_id, "
    "subject, patient, source, entity, entity_version, query, bytes_sent, detail, request_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class SqliteAuditWriter:
    """Writes audit batches; used by one flushing task at a time, from any thread."""

    def __init__(self, path: Path) -> None:
        self._connection = sqlite3.connect(
            str(path.resolve()), timeout=5.0, check_same_thread=False, isolation_level=None
        )
        self._connection.execute("PRAGMA synchronous=NORMAL")

    def write(self, records: Sequence[AuditRecord]) -> None:
        rows = [tuple(audit_values(r)[c] for c in _AUDIT_COLUMNS) for r in records]
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.executemany(_INSERT_AUDIT, rows)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def close(self) -> None:
        self._connection.close()
