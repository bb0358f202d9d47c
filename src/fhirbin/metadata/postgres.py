"""PostgresMetadataStore: the portable SQL store plus PostgreSQL's hot reads.

``SqlMetadataStore.open`` returns this class for a PostgreSQL URL. The reads every request
makes (``current``, ``get_version``, ``current_many``, the ``_id`` search and its count,
``get_client``) skip SQLAlchemy: through it a primary-key lookup cost about a millisecond of
client-side Python (pool checkout, BEGIN, execute, ROLLBACK, result processing) against
0.06 ms of server time. Here each is one ``fetch`` of a prepared statement on a pool of
asyncpg's own: one round trip, no transaction (a single statement under READ COMMITTED sees
every transaction committed before it started, on any node). Measured: docs/development.md,
"PostgreSQL: driver and read path".

Nothing is remembered between reads: every read asks the database, so a write committed by
another node is seen by the next read (no per-process cache on PostgreSQL: nothing would tell
this process that another node wrote).

The SQL is not written out a second time. Each hot statement is built by the same functions of
``queries`` as the portable store's, from placeholder values ("slots"), and compiled once per
shape (how many ids, how many security contexts, the order) into PostgreSQL text with
positional parameters; a call binds its values to the slots' positions (``Prepared``). asyncpg
prepares each text once per connection (its statement cache). Queries of other shapes (date
ranges, keyset pages, very long id lists) take the portable path.

Writes and every other read stay on SQLAlchemy, with their transactions. Failures on this pool
are translated by ``failures.guarded`` exactly like the engine's; connecting gives up after
``CONNECT_TIMEOUT_S`` and a hot read after ``COMMAND_TIMEOUT_S``, so a silently hung server
fails a request instead of hanging it. A pooled connection that died with its server (a
restart, a failover) is replaced by asyncpg on the next acquire; one that dies during a read is
retried once on a fresh connection (reads are idempotent).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import anyio
import asyncpg  # type: ignore[import-untyped]  # no stubs
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from fhirbin.metadata import queries
from fhirbin.metadata.base import BinaryVersion, CatalogueQuery, Client
from fhirbin.metadata.engine import POOL_TIMEOUT_S, postgres_pool_args
from fhirbin.metadata.rows import client_from_row, version_from_row
from fhirbin.metadata.sql import SqlMetadataStore

#: Seconds a hot read may take on the server before it fails (DependencyUnavailable): the
#: statements are index probes taking well under a millisecond.
COMMAND_TIMEOUT_S: Final = 10.0
#: Connections of the hot-read pool. Each read holds one for a single round trip (~0.1 ms), so
#: a few serve a process's whole request rate; more would only cost the server memory.
POOL_MIN: Final = 1
POOL_MAX: Final = 8
#: A connection unused this long is closed (the pool shrinks back to ``POOL_MIN``).
IDLE_S: Final = 300.0
#: Ids per hot query (current_many, search, count); longer lists take the portable path.
FAST_IDS: Final = 100

# Slot values: no real id or context starts with NUL (ids are FHIR ids), and no limit or
# version comes near this number; ``Prepared.compile`` checks each slot is bound exactly once.
_TEXT_SLOT: Final = "\0slot-{:05d}"
_NUMBER_SLOT: Final = 7_000_000_000_000_000

_DIALECT: Final = PGDialect_asyncpg()  # type: ignore[no-untyped-call]

# A connection that died between or during uses: worth one more try on a fresh one.
_CONNECTION_LOST: Final = (asyncpg.ConnectionDoesNotExistError, ConnectionResetError)


class _Slots:
    """Hands out placeholder values standing for a call's arguments, in order."""

    def __init__(self) -> None:
        self.values: list[object] = []

    def text(self) -> str:
        value = _TEXT_SLOT.format(len(self.values))
        self.values.append(value)
        return value

    def texts(self, count: int) -> list[str]:
        return [self.text() for _ in range(count)]

    def number(self) -> int:
        value = _NUMBER_SLOT + len(self.values)
        self.values.append(value)
        return value


@dataclass(frozen=True)
class Prepared:
    """A statement compiled to PostgreSQL text ($1, $2, ...) and how to bind a call to it.

    ``binds`` has one entry per parameter: ``(True, n)`` takes the call's n-th value, ``(False,
    value)`` a constant of the statement (such as ``newest``'s LIMIT 1).
    """

    sql: str
    binds: tuple[tuple[bool, Any], ...]

    @classmethod
    def compile(cls, build: Callable[[_Slots], queries.Statement | None]) -> Prepared:
        slots = _Slots()
        statement = build(slots)
        if statement is None:
            raise ValueError("this shape of query needs no statement")
        compiled = statement.compile(dialect=_DIALECT, compile_kwargs={"render_postcompile": True})
        index = {value: n for n, value in enumerate(slots.values)}
        binds: list[tuple[bool, Any]] = []
        for name in compiled.positiontup or ():
            value = compiled.params[name]
            binds.append((True, index[value]) if value in index else (False, value))
        taken = sorted(n for is_slot, n in binds if is_slot)
        if taken != list(range(len(slots.values))):
            # A statement that changes or drops a value it is given cannot be bound this way.
            raise RuntimeError(f"slots bound {taken} of {len(slots.values)}: {compiled}")
        return cls(str(compiled), tuple(binds))

    def bind(self, values: Sequence[object]) -> list[object]:
        return [values[v] if is_slot else v for is_slot, v in self.binds]


@functools.cache
def _newest() -> Prepared:
    return Prepared.compile(lambda s: queries.newest(s.text()))


@functools.cache
def _get_version() -> Prepared:
    return Prepared.compile(lambda s: queries.get_version(s.text(), s.number()))


@functools.cache
def _client() -> Prepared:
    return Prepared.compile(lambda s: queries.client_by_id(s.text()))


@functools.lru_cache(maxsize=256)
def _live_current(ids: int) -> Prepared:
    return Prepared.compile(lambda s: queries.live_current(s.texts(ids)))


def _query(
    slots: _Slots, ids: int | None, contexts: int | None, descending: bool, paged: bool
) -> CatalogueQuery:
    # Slot order: the limit (of a page; a count has none), ids, contexts: ``_values``.
    limit = slots.number() if paged else 1
    return CatalogueQuery(
        ids=None if ids is None else frozenset(slots.texts(ids)),
        security_contexts=None if contexts is None else frozenset(slots.texts(contexts)),
        descending=descending,
        limit=limit,
    )


def _ids(query: CatalogueQuery) -> list[str] | None:
    return None if query.ids is None else sorted(query.ids)


@functools.lru_cache(maxsize=512)
def _search(ids: int | None, contexts: int | None, descending: bool) -> Prepared:
    def build(slots: _Slots) -> queries.Statement | None:
        query = _query(slots, ids, contexts, descending, paged=True)
        return queries.search(query, _ids(query))

    return Prepared.compile(build)


@functools.lru_cache(maxsize=512)
def _count(ids: int | None, contexts: int | None) -> Prepared:
    def build(slots: _Slots) -> queries.Statement | None:
        query = _query(slots, ids, contexts, False, paged=False)
        return queries.count(query, _ids(query))

    return Prepared.compile(build)


class PostgresMetadataStore(SqlMetadataStore):
    """The catalogue in PostgreSQL: SQLAlchemy for writes, asyncpg directly for hot reads."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self._pool: asyncpg.Pool | None = None

    async def _started(self, url: str) -> None:
        with self._guarded():
            self._pool = await asyncpg.create_pool(
                **postgres_pool_args(url),
                min_size=POOL_MIN,
                max_size=POOL_MAX,
                max_inactive_connection_lifetime=IDLE_S,
                command_timeout=COMMAND_TIMEOUT_S,
            )

    @property
    def pool(self) -> asyncpg.Pool:
        """The hot reads' own pool of asyncpg connections."""
        if self._pool is None:
            raise RuntimeError("PostgresMetadataStore is used before open() finished")
        return self._pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            # Waits for reads in flight, but not for ever.
            with anyio.move_on_after(COMMAND_TIMEOUT_S):
                await pool.close()
            pool.terminate()
        await super().close()

    async def _fetch(self, prepared: Prepared, values: Sequence[object]) -> list[Any]:
        """The rows of one hot statement: one round trip on a pooled connection."""
        args = prepared.bind(values)
        with self._guarded():
            try:
                return await self._fetch_once(prepared.sql, args)
            except _CONNECTION_LOST:
                return await self._fetch_once(prepared.sql, args)

    async def _fetch_once(self, sql: str, args: list[object]) -> list[Any]:
        async with self.pool.acquire(timeout=POOL_TIMEOUT_S) as connection:
            rows: list[Any] = await connection.fetch(sql, *args, timeout=COMMAND_TIMEOUT_S)
            return rows

    async def current(self, binary_id: str) -> BinaryVersion | None:
        rows = await self._fetch(_newest(), (binary_id,))
        return version_from_row(rows[0]) if rows else None

    async def get_version(self, binary_id: str, version: int) -> BinaryVersion | None:
        rows = await self._fetch(_get_version(), (binary_id, version))
        return version_from_row(rows[0]) if rows else None

    async def current_many(self, binary_ids: Sequence[str]) -> list[BinaryVersion]:
        wanted = sorted(set(binary_ids))
        if not wanted or len(wanted) > FAST_IDS:
            return await super().current_many(binary_ids)
        rows = await self._fetch(_live_current(len(wanted)), wanted)
        return sorted((version_from_row(row) for row in rows), key=lambda v: v.id)

    @staticmethod
    def _shape(query: CatalogueQuery) -> tuple[int | None, int | None] | None:
        """(ids, contexts) counts of a query the hot statements serve; None for others."""
        if query.updated or (query.ids is not None and not 0 < len(query.ids) <= FAST_IDS):
            return None
        if query.security_contexts is not None and not query.security_contexts:
            return None
        ids = None if query.ids is None else len(query.ids)
        contexts = None if query.security_contexts is None else len(query.security_contexts)
        return ids, contexts

    @staticmethod
    def _values(query: CatalogueQuery) -> list[object]:
        return [*(query.ids or ()), *(query.security_contexts or ())]

    async def search(self, query: CatalogueQuery) -> list[BinaryVersion]:
        shape = self._shape(query)
        if shape is None or query.after is not None or query.before is not None or query.limit <= 0:
            return await super().search(query)
        prepared = _search(*shape, query.descending)
        rows = await self._fetch(prepared, [query.limit, *self._values(query)])
        return [version_from_row(row) for row in rows]

    async def count(self, query: CatalogueQuery) -> int:
        shape = self._shape(query)
        if shape is None:
            return await super().count(query)
        rows = await self._fetch(_count(*shape), self._values(query))
        return int(rows[0][0])

    async def get_client(self, client_id: str) -> Client | None:
        rows = await self._fetch(_client(), (client_id,))
        return client_from_row(rows[0]) if rows else None
