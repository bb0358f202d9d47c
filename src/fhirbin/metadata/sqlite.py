"""SqliteMetadataStore: the portable SQL store plus SQLite's hot paths.

``SqlMetadataStore.open`` returns this class for a SQLite file. What it adds, all of it safe
only because every writer of an embedded catalogue is a fhirbin process on this machine:

- ``current`` through ``fastread.SqliteReader``: a plain ``sqlite3`` connection on the event
  loop's thread, with reads remembered per process until the shared change signal (a
  memory-mapped word next to the database) moves;
- every version write moves that signal after its transaction ends (``add_version``, ``expunge``,
  ``import_versions``);
- other catalogue reads (``_read``) synchronously through a pooled plain ``sqlite3`` engine;
- audit batches through ``fastread.SqliteAuditWriter`` in a worker thread.

Why each of these pays off is measured in ``fastread``'s docstring and ``_read`` below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import anyio
import anyio.to_thread
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from fhirbin.metadata.base import AuditRecord, BinaryVersion, Expunged
from fhirbin.metadata.engine import create_read_engine
from fhirbin.metadata.fastread import ChangeSignal, SqliteAuditWriter, SqliteReader
from fhirbin.metadata.sql import SqlMetadataStore, T


class SqliteMetadataStore(SqlMetadataStore):
    """The catalogue in one SQLite file, shared by the processes of one machine."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        database = engine.url.database
        if not database:
            raise ValueError("SqliteMetadataStore needs a SQLite file")
        self.database = Path(database)
        self._hot: tuple[ChangeSignal, SqliteReader, SqliteAuditWriter, Engine] | None = None

    async def _started(self, url: str) -> None:
        with self._guarded():
            # Connecting creates the file (in WAL mode) if migrations did not: the plain
            # connections below open an existing file only.
            async with self.engine.connect():
                pass
            changes = ChangeSignal(self.database)
            changes.changed()  # a process that died after a commit may not have (fastread.py)
            self._hot = (
                changes,
                SqliteReader(self.database, changes),
                SqliteAuditWriter(self.database),
                create_read_engine(self.database),
            )

    @property
    def changes(self) -> ChangeSignal:
        return self._parts[0]

    @property
    def fast(self) -> SqliteReader:
        return self._parts[1]

    @property
    def audit_writer(self) -> SqliteAuditWriter:
        return self._parts[2]

    @property
    def reads(self) -> Engine:
        """A synchronous engine for catalogue reads (``_read``)."""
        return self._parts[3]

    @property
    def _parts(self) -> tuple[ChangeSignal, SqliteReader, SqliteAuditWriter, Engine]:
        if self._hot is None:
            raise RuntimeError("SqliteMetadataStore is used before open() finished")
        return self._hot

    async def close(self) -> None:
        if self._hot is not None:
            changes, fast, audit_writer, reads = self._hot
            fast.close()
            audit_writer.close()
            changes.close()
            reads.dispose()
            self._hot = None
        await super().close()

    async def _read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` synchronously, on the caller's thread (the event loop), through a pooled
        plain ``sqlite3`` connection.

        These reads are index range reads of at most a page (``_count`` + 1 rows, 1,001 at
        most) or index-only counts, taking 0.05-0.5 ms (fastread.py), while aiosqlite's thread
        hand-offs for every execute and fetch made an ``_id`` search cost milliseconds under
        load (bench: ~400 searches/s on 2 cores).
        """
        with self._guarded(), self.reads.connect() as connection, connection.begin():
            return work(connection)

    async def current(self, binary_id: str) -> BinaryVersion | None:
        with self._guarded():  # the hot path skips the async driver (fastread.py)
            return self.fast.newest(binary_id)

    async def get_version(self, binary_id: str, version: int) -> BinaryVersion | None:
        with self._guarded():  # vread's hot path, as current's (fastread.py)
            return self.fast.version(binary_id, version)

    async def add_version(self, version: BinaryVersion, audit: AuditRecord | None = None) -> None:
        try:
            await super().add_version(version, audit)
        finally:
            # After the commit (or the rollback, harmlessly): every process's remembered
            # current versions are forgotten before this write is answered (fastread.py).
            self.changes.changed()

    async def expunge(self, binary_id: str, audit: AuditRecord | None = None) -> Expunged | None:
        try:
            return await super().expunge(binary_id, audit)
        finally:
            self.changes.changed()

    async def import_versions(self, versions: Sequence[BinaryVersion]) -> int:
        try:
            return await super().import_versions(versions)
        finally:
            self.changes.changed()

    async def add_audit(self, records: Sequence[AuditRecord]) -> None:
        if not records:
            return
        with self._guarded():  # off the event loop, no driver (fastread.py)
            await anyio.to_thread.run_sync(self.audit_writer.write, records)
