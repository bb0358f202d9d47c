"""PostgreSQL's hot reads (metadata/postgres.py): prepared statements on an asyncpg pool of the
store's own, compiled from the same ``queries`` statements as the portable store's.

They must be the path taken, return exactly what the portable store returns, and see a write
committed through another store object (another node) at once: nothing is remembered.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs
import pytest
from sqlalchemy import event

from fhirbin.faults import DependencyUnavailable
from fhirbin.metadata import postgres, queries
from fhirbin.metadata.base import CatalogueQuery, Keyset, UpdatedRange
from fhirbin.metadata.engine import create_engine
from fhirbin.metadata.postgres import PostgresMetadataStore, Prepared
from fhirbin.metadata.sql import SqlMetadataStore
from tests.metadata.support import WHEN, a_client, marker, version
from tests.metadata.test_metadata_plans import recording_hot_reads
from tests.pg_support import PostgresCluster

pytestmark = pytest.mark.anyio


@pytest.fixture
def url(postgres: PostgresCluster) -> str:
    return postgres.new_database()


@pytest.fixture
async def store(url: str) -> AsyncIterator[PostgresMetadataStore]:
    opened = await SqlMetadataStore.open(url)
    assert type(opened) is PostgresMetadataStore
    yield opened
    await opened.close()


HOT_READS: dict[str, Callable[[SqlMetadataStore], Awaitable[object]]] = {
    "current": lambda s: s.current("a"),
    "get_version": lambda s: s.get_version("a", 1),
    "current_many": lambda s: s.current_many(["a", "b"]),
    "search _id": lambda s: s.search(CatalogueQuery(ids=frozenset({"a"}), limit=11)),
    "count _id": lambda s: s.count(CatalogueQuery(ids=frozenset({"a"}))),
    "search": lambda s: s.search(CatalogueQuery(descending=True, limit=5)),
    "search in contexts": lambda s: s.search(
        CatalogueQuery(security_contexts=frozenset({"Patient/123", "Patient/9"}))
    ),
    "count": lambda s: s.count(CatalogueQuery()),
    "get_client": lambda s: s.get_client("app"),
}


@pytest.mark.parametrize("read", list(HOT_READS.values()), ids=list(HOT_READS))
async def test_hot_reads_take_the_asyncpg_pool_not_sqlalchemy(
    store: PostgresMetadataStore, read: Callable[[SqlMetadataStore], Awaitable[object]]
) -> None:
    await store.add_version(version("a", 1))
    await store.add_client(a_client())
    through_sqlalchemy: list[str] = []
    through_pool: list[tuple[str, Any]] = []

    def record(*args: Any) -> None:
        through_sqlalchemy.append(args[2])

    event.listen(store.engine.sync_engine, "before_cursor_execute", record)
    try:
        with recording_hot_reads(store, through_pool):
            await read(store)
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", record)
    assert through_sqlalchemy == []
    assert len(through_pool) == 1


OTHER_SHAPES: dict[str, Callable[[SqlMetadataStore], Awaitable[object]]] = {
    "a date range": lambda s: s.search(CatalogueQuery(updated=(UpdatedRange(1, None),))),
    "a keyset page": lambda s: s.search(CatalogueQuery(after=Keyset(1, "a", 1))),
    "a count of a date range": lambda s: s.count(CatalogueQuery(updated=(UpdatedRange(1, 2),))),
    "many ids": lambda s: s.current_many([f"i{n}" for n in range(postgres.FAST_IDS + 1)]),
}


@pytest.mark.parametrize("read", list(OTHER_SHAPES.values()), ids=list(OTHER_SHAPES))
async def test_other_shapes_take_the_portable_path(
    store: PostgresMetadataStore, read: Callable[[SqlMetadataStore], Awaitable[object]]
) -> None:
    seen: list[tuple[str, Any]] = []
    with recording_hot_reads(store, seen):
        await read(store)
    assert seen == []


async def test_a_write_through_another_store_is_seen_at_once(
    store: PostgresMetadataStore, url: str
) -> None:
    """Two store objects on one database stand in for two nodes: no read may be stale."""
    other = await SqlMetadataStore.open(url)  # the writing node
    by_id = CatalogueQuery(ids=frozenset({"a"}))
    try:
        assert await store.current("a") is None
        assert await store.get_client("app") is None
        assert await store.count(by_id) == 0
        for number in (1, 2):
            await other.add_version(version("a", number, size=number))
            assert await store.current("a") == version("a", number, size=number)
            assert await store.get_version("a", number) == version("a", number, size=number)
            assert await store.current_many(["a"]) == [version("a", number, size=number)]
            assert await store.search(by_id) == [version("a", number, size=number)]
            assert await store.count(by_id) == 1
        await other.add_version(marker("a", 3))
        current = await store.current("a")
        assert current is not None
        assert current.deleted
        assert await store.current_many(["a"]) == []
        assert await store.search(by_id) == []
        assert await store.count(by_id) == 0

        await other.add_client(a_client())
        assert await store.get_client("app") == a_client()
        await other.revoke_client("app", WHEN)
        revoked = await store.get_client("app")
        assert revoked is not None
        assert not revoked.active
    finally:
        await other.close()


async def test_hot_reads_return_what_the_portable_store_returns(
    store: PostgresMetadataStore, url: str
) -> None:
    portable = SqlMetadataStore(create_engine(url))  # the same database, SQLAlchemy only
    contexts = ["Patient/1", "Patient/2", None]
    ids = [f"b{n}" for n in range(8)]
    for n, binary_id in enumerate(ids):
        for number in range(1, n % 3 + 2):
            when = WHEN + timedelta(seconds=(n * 7) % 5, microseconds=number)
            await store.add_version(
                version(binary_id, number, last_updated=when, security_context=contexts[n % 3])
            )
    await store.add_version(marker("b4", 5))
    await store.add_client(a_client())
    try:
        for binary_id in [*ids, "unknown"]:
            assert await store.current(binary_id) == await portable.current(binary_id)
            for number in range(0, 6):
                got = await store.get_version(binary_id, number)
                assert got == await portable.get_version(binary_id, number)
        for client_id in ("app", "unknown"):
            assert await store.get_client(client_id) == await portable.get_client(client_id)
        id_sets: list[frozenset[str] | None] = [
            None,
            frozenset({"b1"}),
            frozenset({"b4"}),
            frozenset({"b0", "b4", "b7", "unknown"}),
            frozenset(ids),
        ]
        context_sets: list[frozenset[str] | None] = [
            None,
            frozenset({"Patient/1"}),
            frozenset({"Patient/1", "Patient/2"}),
            frozenset({"Patient/9"}),
        ]
        for wanted, allowed, descending, limit in itertools.product(
            id_sets, context_sets, (False, True), (1, 3, 100)
        ):
            query = CatalogueQuery(
                ids=wanted, security_contexts=allowed, descending=descending, limit=limit
            )
            assert await store.search(query) == await portable.search(query), query
            assert await store.count(query) == await portable.count(query), query
            if wanted is not None:
                many = sorted(wanted)
                assert await store.current_many(many) == await portable.current_many(many)
    finally:
        await portable.close()


def test_a_statement_that_changes_a_value_cannot_be_prepared() -> None:
    with pytest.raises(RuntimeError, match="slots bound"):
        Prepared.compile(lambda slots: queries.newest(slots.text() + "!"))


async def test_a_hung_server_fails_a_hot_read_after_the_command_timeout(
    store: PostgresMetadataStore, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that accepts the query and never answers (here: a lock held by another
    session) fails the read as unavailable instead of hanging the request."""
    monkeypatch.setattr(postgres, "COMMAND_TIMEOUT_S", 0.5)
    await store.add_version(version("a", 1))
    holder = await asyncpg.connect(url)
    try:
        locked = holder.transaction()
        await locked.start()
        await holder.execute("LOCK TABLE binary_version IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(DependencyUnavailable) as raised:
            await store.current("a")
        assert "TimeoutError" in raised.value.detail
        await locked.rollback()
        assert await store.current("a") == version("a", 1)  # the same pool serves on
    finally:
        await holder.close()
