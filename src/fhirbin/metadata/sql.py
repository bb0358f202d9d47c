"""SqlMetadataStore: the MetadataStore on SQLAlchemy Core (async), portable to SQLite and
PostgreSQL.

This module runs the statements of ``queries`` (and the clients', keys' and contents' few) and
maps rows to and from the dataclasses of ``base``: datetimes become integer microseconds since
the Unix epoch (UTC) and come back timezone-aware. Every query is portable SQL; database-specific
setup lives in ``engine``, SQLite's hot paths in the subclass of ``sqlite``, PostgreSQL's in
that of ``postgres``. Each read is one
statement, except for id sets larger than one query takes.

Every connection is taken through ``_connect`` or ``_write``, which translate driver failures
into ``fhirbin.faults`` (``failures``). On PostgreSQL every read asks the database: there is no
per-process cache of current versions, since nothing would tell one node that another wrote
(docs/development.md, "PostgreSQL: driver and read path").
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fhirbin.metadata import migrate as migrations
from fhirbin.metadata import queries
from fhirbin.metadata.audit_sql import audit_from_row, audit_values, search_statement
from fhirbin.metadata.base import (
    AuditQuery,
    AuditRecord,
    BinaryVersion,
    CatalogueQuery,
    Client,
    ClientExists,
    ContentRef,
    HistoryQuery,
    KeyExists,
    SigningKeyRecord,
    VersionConflict,
)
from fhirbin.metadata.engine import (
    create_engine,
    database_display,
    is_postgres,
    sqlite_file,
    sqlite_url,
    write_transaction,
)
from fhirbin.metadata.failures import guarded
from fhirbin.metadata.rows import (
    client_from_row,
    client_values,
    key_from_row,
    key_values,
    version_from_row,
    version_values,
)
from fhirbin.metadata.schema import (
    assertion_jti,
    audit_event,
    binary_version,
    catalogue_once,
    client,
    signing_key,
)
from fhirbin.metadata.times import from_micros, to_micros

__all__ = ["SqlMetadataStore", "from_micros", "sqlite_url", "to_micros"]


T = TypeVar("T")

#: The one-time event (table catalogue_once) of storing the first signing key.
_FIRST_KEY = "first signing key"

# Ids per query (current_many, search, count): far below the bound-parameter limits of SQLite
# (32766) and asyncpg (32767), so any number of ids works, in one query for every realistic page.
_IDS_PER_QUERY = 500


def _chunks(values: Collection[str]) -> list[list[str]]:
    wanted = sorted(set(values))
    return [wanted[n : n + _IDS_PER_QUERY] for n in range(0, len(wanted), _IDS_PER_QUERY)]


def _id_chunks(ids: Collection[str] | None) -> list[Sequence[str] | None]:
    """``ids`` in query-sized chunks, sorted; [None] for "any id", [] for no ids at all."""
    if ids is None:
        return [None]
    wanted = sorted(set(ids))
    return [
        wanted[start : start + _IDS_PER_QUERY] for start in range(0, len(wanted), _IDS_PER_QUERY)
    ]


def _search_key(version: BinaryVersion) -> tuple[datetime, str]:
    # Merges the pages of several id chunks, so it must order as the database does. Python
    # compares str by code point, as SQLite's BINARY collation and PostgreSQL's "C" collation of
    # the id column do (schema.py).
    return (version.last_updated, version.id)


def _by_id(versions: list[BinaryVersion]) -> list[BinaryVersion]:
    # Sorted here rather than by ORDER BY: PostgreSQL compares text by the database's collation,
    # SQLite by bytes; the contract's order must not depend on the database.
    return sorted(versions, key=lambda version: version.id)


class SqlMetadataStore:
    """The catalogue in a SQL database reached through one async engine (a connection pool)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        #: the database as messages name it (password masked)
        self.display = database_display(engine.url)

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> SqlMetadataStore:
        """Connect to ``url`` and, unless told otherwise, upgrade its schema to head.

        A SQLite file gets the ``SqliteMetadataStore`` (its hot paths), PostgreSQL the
        ``PostgresMetadataStore`` (its hot reads), any other database (in-memory SQLite) this
        portable store.
        """
        if cls is SqlMetadataStore:
            # Imported here: the subclasses' modules import this one.
            if sqlite_file(url) is not None:
                from fhirbin.metadata.sqlite import SqliteMetadataStore

                return await SqliteMetadataStore.open(url, migrate=migrate)
            if is_postgres(url):
                from fhirbin.metadata.postgres import PostgresMetadataStore

                return await PostgresMetadataStore.open(url, migrate=migrate)
        if migrate and (sqlite_file(url) is not None or is_postgres(url)):
            # On an engine of its own: without PostgreSQL's statement time limit, and leaving
            # no migration connection in the store's pool.
            await migrations.upgrade_url(url)
            migrate = False
        engine = create_engine(url)
        try:
            if migrate:
                await migrations.upgrade(engine)
            store = cls(engine)
            await store._started(url)
        except BaseException:
            await engine.dispose()
            raise
        return store

    async def _started(self, url: str) -> None:
        """Called once by ``open`` (``url`` as given) after migrating: subclasses set up what
        they add here."""

    async def close(self) -> None:
        await self.engine.dispose()

    async def check(self) -> None:
        """Raise ``faults.DependencyUnavailable`` unless the database answers now (readiness)."""
        async with self._connect() as connection:
            await connection.execute(text("SELECT 1"))

    # Connections: the only ways in, each translating driver failures (failures.py).

    @contextmanager
    def _guarded(self) -> Iterator[None]:
        with guarded(self.display, self.engine.url.password):
            yield

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[AsyncConnection]:
        with self._guarded():
            async with self.engine.connect() as connection:
                yield connection

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction, committed when the block ends (``engine.write_transaction``)."""
        with self._guarded():
            async with write_transaction(self.engine) as connection:
                yield connection

    async def _read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` (catalogue reads, one transaction: one snapshot) on a pooled connection."""
        async with self._connect() as pooled:
            return await pooled.run_sync(work)

    # Binary versions.

    async def add_version(self, version: BinaryVersion, audit: AuditRecord | None = None) -> None:
        values = version_values(version)
        try:
            async with self._write() as connection:
                # Insert first: a writer losing the race for (id, version) fails here, before
                # touching any other row, and its transaction rolls back whole.
                await connection.execute(insert(binary_version).values(values))
                await connection.execute(queries.settle_current(version.id, version.version))
                if audit is not None:
                    await connection.execute(insert(audit_event).values(audit_values(audit)))
        except IntegrityError as error:
            # The primary key is the only unique constraint, but a NOT NULL violation is an
            # IntegrityError too: only call it a conflict when the row really is there.
            if await self._has_version(version.id, version.version):
                raise VersionConflict(f"{version.id} version {version.version} exists") from error
            raise

    async def _has_version(self, binary_id: str, version: int) -> bool:
        return await self.get_version(binary_id, version) is not None

    @staticmethod
    def _all(connection: Connection, statement: queries.Statement) -> list[BinaryVersion]:
        return [version_from_row(row) for row in connection.execute(statement).mappings()]

    async def current(self, binary_id: str) -> BinaryVersion | None:
        found = await self._read(lambda c: self._all(c, queries.newest(binary_id)))
        return found[0] if found else None

    async def get_version(self, binary_id: str, version: int) -> BinaryVersion | None:
        found = await self._read(lambda c: self._all(c, queries.get_version(binary_id, version)))
        return found[0] if found else None

    async def current_many(self, binary_ids: Sequence[str]) -> list[BinaryVersion]:
        def work(connection: Connection) -> list[BinaryVersion]:
            found: list[BinaryVersion] = []
            for chunk in _id_chunks(binary_ids):
                found.extend(self._all(connection, queries.live_current(chunk)))
            return _by_id(found)

        return await self._read(work)

    async def current_all(self) -> list[BinaryVersion]:
        return await self._read(lambda c: _by_id(self._all(c, queries.live_current(None))))

    async def search(self, query: CatalogueQuery) -> list[BinaryVersion]:
        chunks = (queries.search(query, chunk) for chunk in _id_chunks(query.ids))
        statements = [statement for statement in chunks if statement is not None]
        if not statements:
            return []

        def work(connection: Connection) -> list[BinaryVersion]:
            # One transaction, so that on SQLite every chunk reads one snapshot.
            found: list[BinaryVersion] = []
            for statement in statements:
                found.extend(self._all(connection, statement))
            return found

        found = await self._read(work)
        if len(statements) > 1:
            # Each chunk gave its first ``limit`` rows in order; the page is the first ``limit``
            # of them all.
            descending = queries.reads_descending(query.descending, query.before)
            found.sort(key=_search_key, reverse=descending)
            del found[query.limit :]
        if query.before is not None:
            # Read backwards from the keyset; returned in the query's order.
            found.reverse()
        return found

    async def count(self, query: CatalogueQuery) -> int:
        chunks = (queries.count(query, chunk) for chunk in _id_chunks(query.ids))
        statements = [statement for statement in chunks if statement is not None]
        if not statements:
            return 0
        return await self._read(
            lambda c: sum(int(c.execute(statement).scalar_one()) for statement in statements)
        )

    async def history(self, query: HistoryQuery) -> list[BinaryVersion]:
        statement = queries.history(query)
        if statement is None:
            return []
        found = await self._read(lambda c: self._all(c, statement))
        if query.before is not None:
            found.reverse()
        return found

    async def count_history(self, query: HistoryQuery) -> int:
        statement = queries.count_history(query)
        return await self._read(lambda c: int(c.execute(statement).scalar_one()))

    # Clients.

    async def remember_jti(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        # RFC 7523 §3 item 7 / SMART client-confidential-asymmetric: a jti is accepted once.
        # The primary key (issuer, jti) lets exactly one insert win, across processes and nodes;
        # records past their expiry are purged in the same transaction (never accepted anyway).
        now = to_micros(datetime.now(UTC))
        purge = delete(assertion_jti).where(assertion_jti.c.expires_at < now)
        row = {"issuer": issuer, "jti": jti, "expires_at": to_micros(expires_at)}
        try:
            async with self._write() as connection:
                await connection.execute(purge)
                await connection.execute(insert(assertion_jti).values(row))
        except IntegrityError:
            seen = select(assertion_jti.c.jti).where(
                assertion_jti.c.issuer == issuer, assertion_jti.c.jti == jti
            )
            async with self._connect() as connection:
                if (await connection.execute(seen)).first() is not None:
                    return False
            raise
        return True

    async def add_audit(self, records: Sequence[AuditRecord]) -> None:
        if not records:
            return
        # One multi-row INSERT (executemany) in one transaction: a batch is stored whole or not.
        async with self._write() as connection:
            await connection.execute(insert(audit_event), [audit_values(r) for r in records])

    async def search_audit(self, query: AuditQuery) -> list[AuditRecord]:
        statement = search_statement(query)
        if statement is None:
            return []
        async with self._connect() as connection:
            result = await connection.execute(statement)
            return [audit_from_row(row) for row in result.mappings()]

    async def add_client(self, new: Client) -> None:
        values = client_values(new)
        try:
            async with self._write() as connection:
                await connection.execute(insert(client).values(values))
        except IntegrityError as error:
            if await self.get_client(new.client_id) is not None:
                raise ClientExists(new.client_id) from error
            raise

    async def get_client(self, client_id: str) -> Client | None:
        async with self._connect() as connection:
            row = (await connection.execute(queries.client_by_id(client_id))).mappings().first()
        return None if row is None else client_from_row(row)

    async def list_clients(self) -> list[Client]:
        query = select(client).order_by(client.c.created_at, client.c.client_id)
        async with self._connect() as connection:
            result = await connection.execute(query)
            return [client_from_row(row) for row in result.mappings()]

    async def revoke_client(self, client_id: str, when: datetime) -> bool:
        # Only the first revocation is recorded; revoking again keeps the original time.
        revoke = (
            update(client)
            .where(client.c.client_id == client_id, client.c.revoked_at.is_(None))
            .values(revoked_at=to_micros(when))
        )
        exists = select(client.c.client_id).where(client.c.client_id == client_id)
        async with self._write() as connection:
            if (await connection.execute(revoke)).rowcount == 1:
                return True
            return (await connection.execute(exists)).first() is not None

    # Token signing keys.

    async def add_signing_key(self, record: SigningKeyRecord) -> None:
        try:
            async with self._write() as connection:
                await connection.execute(insert(signing_key).values(key_values(record)))
        except IntegrityError as error:
            if any(key.kid == record.kid for key in await self.signing_keys()):
                raise KeyExists(record.kid) from error
            raise

    async def signing_keys(self) -> list[SigningKeyRecord]:
        newest = select(signing_key).order_by(
            signing_key.c.created_at.desc(), signing_key.c.kid.desc()
        )
        async with self._connect() as connection:
            return [key_from_row(row) for row in (await connection.execute(newest)).mappings()]

    async def ensure_signing_key(self, make: Callable[[], SigningKeyRecord]) -> SigningKeyRecord:
        # Nodes starting together all find no key. Each tries to record the one-time event
        # "first signing key" together with its key; the primary key of catalogue_once lets
        # exactly one transaction commit (on PostgreSQL the others wait for it, then fail), and
        # the losers read the winner's key. Portable: no advisory lock, no table lock.
        keys = await self.signing_keys()
        if keys:
            return keys[0]
        record = make()
        try:
            async with self._write() as connection:
                await connection.execute(insert(catalogue_once).values(name=_FIRST_KEY))
                await connection.execute(insert(signing_key).values(key_values(record)))
        except IntegrityError:
            keys = await self.signing_keys()
            if not keys:
                raise
            return keys[0]
        return record

    # Contents.

    async def referenced(self, keys: Collection[str]) -> set[str]:
        sha256 = binary_version.c.sha256
        statements = [select(sha256).distinct().where(sha256.in_(chunk)) for chunk in _chunks(keys)]
        if not statements:
            return set()
        return await self._read(
            lambda c: {row[0] for statement in statements for row in c.execute(statement)}
        )

    async def contents(self, after: str | None, limit: int) -> list[ContentRef]:
        if limit <= 0:
            return []
        sha256 = binary_version.c.sha256
        # The page of hashes first (an in-order read of ix_binary_version_sha256), then the rows
        # naming them: a limit must count contents, not rows.
        page = select(sha256).distinct().where(sha256.is_not(None))
        if after is not None:
            page = page.where(sha256 > after)
        page = page.order_by(sha256).limit(limit)

        def work(connection: Connection) -> list[ContentRef]:
            hashes = [row[0] for row in connection.execute(page)]
            if not hashes:
                return []
            rows = connection.execute(
                select(sha256, func.max(binary_version.c.size), binary_version.c.id)
                .where(sha256.in_(hashes))
                .group_by(sha256, binary_version.c.id)
            )
            sizes: dict[str, int] = {}
            ids: dict[str, list[str]] = {h: [] for h in hashes}
            for key, size, binary_id in rows:
                sizes[key] = max(sizes.get(key, 0), size)
                ids[key].append(binary_id)
            return [ContentRef(h, sizes[h], tuple(sorted(ids[h]))) for h in hashes]

        return await self._read(work)

    # Whole-catalogue copies (transfer.py).

    async def versions_page(self, after: tuple[str, int] | None, limit: int) -> list[BinaryVersion]:
        if limit <= 0:
            return []
        statement = select(*queries.VERSION_COLUMNS)
        if after is not None:
            after_id, after_version = after
            statement = statement.where(
                (binary_version.c.id > after_id)
                | ((binary_version.c.id == after_id) & (binary_version.c.version > after_version))
            )
        statement = statement.order_by(binary_version.c.id, binary_version.c.version).limit(limit)
        return await self._read(lambda c: self._all(c, statement))

    async def import_versions(self, versions: Sequence[BinaryVersion]) -> int:
        if not versions:
            return 0
        table = binary_version.c
        async with self._write() as connection:
            present: set[tuple[str, int]] = set()
            for chunk in _chunks({v.id for v in versions}):
                found = await connection.execute(
                    select(table.id, table.version).where(table.id.in_(chunk))
                )
                present.update((row[0], row[1]) for row in found)
            new = [v for v in versions if (v.id, v.version) not in present]
            if not new:
                return 0
            await connection.execute(insert(binary_version), [version_values(v) for v in new])
            for chunk in _chunks({v.id for v in new}):
                await connection.execute(queries.settle_ids(chunk))
        return len(new)

    async def import_audit(self, records: Sequence[AuditRecord]) -> int:
        if not records:
            return 0
        async with self._write() as connection:
            present: set[str] = set()
            for chunk in _chunks({r.id for r in records}):
                found = await connection.execute(
                    select(audit_event.c.id).where(audit_event.c.id.in_(chunk))
                )
                present.update(row[0] for row in found)
            new = [r for r in records if r.id not in present]
            if new:
                await connection.execute(insert(audit_event), [audit_values(r) for r in new])
        return len(new)
