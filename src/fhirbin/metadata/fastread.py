"""SQLite hot paths that bypass the async driver: version reads and audit batches.

The reads: the current version of an id (read, and search by ``_id``) and one version of it
(vread), each one indexed query, run synchronously on the event loop.

Reading the current version of one id is a primary-key probe that SQLite answers in a few
microseconds. Through the async driver (aiosqlite) it costs a thread hop, a queue round trip
and SQLAlchemy's statement machinery: measured at 0.6 k reads/s against 14 k/s for a route
without a query (bench/, 2 cores). So the store keeps one plain ``sqlite3`` connection per
process for this query alone, used only from the event loop's thread: in WAL mode readers
never wait for writers, and a committed write by any process is visible to the next read.

Reads are also remembered per process, keyed by id, until the catalogue changes: every
committed version write (``SqliteMetadataStore.add_version``, ``expunge`` and
``import_versions``, the only writers of versions) then
rewrites a shared 8-byte word (:class:`ChangeSignal`, a memory-mapped file next to the
database) with a fresh random value, and a reader that finds the word changed forgets all it
remembered. Reading the word is a memory load, so a hot read asks SQLite nothing: measured,
the query (and its GIL release and re-acquisition under load) was the largest single cost of
the 1 KiB read. The word is read *before* the query, so a version committed after it was read
can never be remembered under the old word; a random value, not a counter, so two writers
racing cannot write the same value and lose a change. Every writer of this database is a
fhirbin process on this machine (SQLite is the embedded store). Should one die between its
commit and its signal, nothing is remembered for longer than ``MAX_AGE`` seconds anyway, and
its replacement signals a change when it opens the store.

Audit batches (hundreds of rows every 0.2 s under load) go through a second plain connection
with one ``executemany`` in one transaction, called from a worker thread: through SQLAlchemy
and aiosqlite the same batch cost the event loop milliseconds of parameter processing and
thread hand-offs, which showed as a p99 of 100+ ms on small reads.
"""

from __future__ import annotations

import functools
import mmap
import operator
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from fhirbin.metadata.audit_sql import audit_values
from fhirbin.metadata.base import AuditRecord, BinaryVersion
from fhirbin.metadata.times import from_micros

_NEWEST = (
    "SELECT id, version, last_updated, content_type, security_context, size, sha256, deleted "
    "FROM binary_version WHERE id = ? ORDER BY version DESC LIMIT 1"
)

_VERSION = (
    "SELECT id, version, last_updated, content_type, security_context, size, sha256, deleted "
    "FROM binary_version WHERE id = ? AND version = ?"
)

_SIGNAL_SIZE: Final = 8


class ChangeSignal:
    """An 8-byte word shared by every process using one SQLite catalogue (see the docstring)."""

    def __init__(self, database: Path) -> None:
        path = database.with_name(database.name + "-changes")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _SIGNAL_SIZE:
                os.pwrite(fd, os.urandom(_SIGNAL_SIZE), 0)
            self._map = mmap.mmap(fd, _SIGNAL_SIZE)
        finally:
            os.close(fd)  # the mapping keeps the file

    def read(self) -> bytes:
        return self._map[:_SIGNAL_SIZE]

    def changed(self) -> None:
        self._map[:_SIGNAL_SIZE] = os.urandom(_SIGNAL_SIZE)

    def close(self) -> None:
        self._map.close()


MAX_REMEMBERED: Final = 50_000  # ids; about 300 bytes each
MAX_AGE: Final = 1.0  # seconds


class SqliteReader:
    def __init__(self, path: Path, changes: ChangeSignal) -> None:
        self._changes = changes
        self._seen = changes.read()
        self._since = time.monotonic()
        self._remembered: dict[str | tuple[str, int], BinaryVersion | None] = {}
        # Read-only: this connection never takes a write lock. A short busy timeout: in WAL
        # mode a reader only waits while a crashed writer's WAL is being recovered.
        uri = f"{path.resolve().as_uri()}?mode=ro"
        self._connection = sqlite3.connect(
            uri, uri=True, timeout=1.0, check_same_thread=False, isolation_level=None
        )
        self._connection.execute("PRAGMA query_only = ON")

    def newest(self, binary_id: str) -> BinaryVersion | None:
        """The newest version of ``binary_id`` (a deletion marker included), or None."""
        return self._remember(binary_id, _NEWEST, (binary_id,))

    def version(self, binary_id: str, version: int) -> BinaryVersion | None:
        """Version ``version`` of ``binary_id`` (vread), or None; remembered like the newest,
        and forgotten with it (an expunge removes versions)."""
        return self._remember((binary_id, version), _VERSION, (binary_id, version))

    def _remember(
        self, key: str | tuple[str, int], sql: str, args: tuple[object, ...]
    ) -> BinaryVersion | None:
        stamp = self._changes.read()  # before the query: see the module docstring
        now = time.monotonic()
        if stamp != self._seen or now - self._since > MAX_AGE:
            self._remembered.clear()
            self._seen = stamp
            self._since = now
        try:
            return self._remembered[key]
        except KeyError:
            pass
        version = self._query(sql, args)
        if len(self._remembered) >= MAX_REMEMBERED:
            self._remembered.clear()
        self._remembered[key] = version
        return version

    def _query(self, sql: str, args: tuple[object, ...]) -> BinaryVersion | None:
        row = self._connection.execute(sql, args).fetchone()
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
_audit_row = operator.itemgetter(*_AUDIT_COLUMNS)
#: Rows per INSERT statement: 500 x 16 parameters, well under SQLite's 32,766 (3.32+).
ROWS_PER_INSERT: Final = 500


@functools.cache
def _insert_audit(rows: int) -> str:
    # Only constant column names and placeholders go into the text; the values are bound.
    one = "(" + ", ".join("?" * len(_AUDIT_COLUMNS)) + ")"
    head = "INSERT INTO audit_event (" + ", ".join(_AUDIT_COLUMNS) + ") VALUES "  # noqa: S608
    return head + ", ".join([one] * rows)


class SqliteAuditWriter:
    """Writes audit batches; used by one flushing task at a time, from any thread.

    One multi-row INSERT per 500 records, not ``executemany``: executemany releases and
    re-takes the GIL around every row's step, and each re-take from this thread made the event
    loop's thread wait (seen as the small read's p99); one statement releases it once.
    """

    def __init__(self, path: Path) -> None:
        self._connection = sqlite3.connect(
            str(path.resolve()), timeout=5.0, check_same_thread=False, isolation_level=None
        )
        # A write connection: durable commits, as the engine's (engine._configure_sqlite_writer).
        self._connection.execute("PRAGMA synchronous=FULL")

    def write(self, records: Sequence[AuditRecord]) -> None:
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            for start in range(0, len(records), ROWS_PER_INSERT):
                chunk = records[start : start + ROWS_PER_INSERT]
                values = [v for r in chunk for v in _audit_row(audit_values(r))]
                connection.execute(_insert_audit(len(chunk)), values)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def close(self) -> None:
        self._connection.close()
