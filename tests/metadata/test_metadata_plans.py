"""The read hot path stays cheap: one statement per call, each an in-order index range read.

Checked on SQLite with EXPLAIN QUERY PLAN on the exact statements the store ran. The store
depends on these plans: a page must stop after ``limit`` rows instead of sorting every match,
and a count must read the live index only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event

from fhirbin.metadata import fastread
from fhirbin.metadata.base import CatalogueQuery, HistoryQuery, Keyset, UpdatedRange
from fhirbin.metadata.postgres import PostgresMetadataStore
from fhirbin.metadata.sql import SqlMetadataStore
from fhirbin.metadata.sqlite import SqliteMetadataStore
from tests.metadata.support import WHEN, Database, version

pytestmark = pytest.mark.anyio

LIVE = "ix_binary_version_live"
HISTORY = "ix_binary_version_last_updated_id_version"
PRIMARY_KEY = "sqlite_autoindex_binary_version_1"

MARK = Keyset(10**15, "i10", 1)
RANGE = (UpdatedRange(1, 10**17), UpdatedRange(10**14, None))

# (what the call does, the call, the index its statement must read, whether it may sort)
CALLS: list[tuple[str, Callable[[SqlMetadataStore], Awaitable[object]], str, bool]] = [
    ("search", lambda s: s.search(CatalogueQuery(limit=5)), LIVE, False),
    ("search range", lambda s: s.search(CatalogueQuery(updated=RANGE, after=MARK)), LIVE, False),
    ("search newest", lambda s: s.search(CatalogueQuery(descending=True, after=MARK)), LIVE, False),
    ("search before", lambda s: s.search(CatalogueQuery(before=MARK)), LIVE, False),
    (
        "search outside",
        lambda s: s.search(CatalogueQuery(updated=(UpdatedRange(1, 10**17, inside=False),))),
        LIVE,
        False,
    ),
    # A few ids: looked up by primary key, then their (few) rows sorted.
    (
        "search ids",
        lambda s: s.search(CatalogueQuery(ids=frozenset({"i1", "i2"}))),
        PRIMARY_KEY,
        True,
    ),
    ("count", lambda s: s.count(CatalogueQuery(updated=RANGE)), LIVE, False),
    ("history", lambda s: s.history(HistoryQuery(after=MARK, limit=5)), HISTORY, False),
    ("history since", lambda s: s.history(HistoryQuery(since_us=5, before=MARK)), HISTORY, False),
    ("history of an id", lambda s: s.history(HistoryQuery(binary_id="i3")), PRIMARY_KEY, True),
    ("count history", lambda s: s.count_history(HistoryQuery(since_us=5)), HISTORY, False),
    ("get version", lambda s: s.get_version("i3", 1), PRIMARY_KEY, False),
    ("current many", lambda s: s.current_many(["i1", "i2"]), PRIMARY_KEY, False),
    ("current all", lambda s: s.current_all(), LIVE, False),
]


#: The parameters recorded for a statement of fastread.py's connection (bound in already).
FAST = ("fast",)


@contextmanager
def statements_run(store: SqlMetadataStore) -> Iterator[list[tuple[str, Any]]]:
    """Collects the statements (and their parameters) the store runs, transaction control aside."""
    seen: list[tuple[str, Any]] = []

    def record(*args: Any) -> None:
        statement, parameters = args[2], args[3]
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            seen.append((statement, parameters))

    # Reads go through the synchronous read engine on SQLite, else through the async one; on
    # PostgreSQL the hot reads through the store's own asyncpg pool.
    engines = [store.engine.sync_engine]
    if isinstance(store, SqliteMetadataStore):
        engines.append(store.reads)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    # On SQLite the hot reads (current, get_version) run on fastread.py's plain connection:
    # its trace callback gives each statement with its parameters bound in (marked FAST).
    fast = store.fast._connection if isinstance(store, SqliteMetadataStore) else None
    if fast is not None:
        fast.set_trace_callback(lambda statement: seen.append((statement, FAST)))
    try:
        with recording_hot_reads(store, seen):
            yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)
        if fast is not None:
            fast.set_trace_callback(None)


@contextmanager
def recording_hot_reads(store: SqlMetadataStore, seen: list[tuple[str, Any]]) -> Iterator[None]:
    """On PostgreSQL, also records what the hot reads send over the store's asyncpg pool."""
    if not isinstance(store, PostgresMetadataStore):
        yield
        return
    fetch_once = store._fetch_once

    async def recorded(sql: str, args: list[object]) -> list[Any]:
        seen.append((sql, args))
        return await fetch_once(sql, args)

    store._fetch_once = recorded  # type: ignore[method-assign]
    try:
        yield
    finally:
        del store._fetch_once


@pytest.mark.parametrize(
    ("call", "index", "sorts"),
    [pytest.param(call, index, sorts, id=name) for name, call, index, sorts in CALLS],
)
async def test_each_read_is_one_statement_reading_the_right_index(
    store: SqlMetadataStore,
    database: Database,
    call: Callable[[SqlMetadataStore], Awaitable[object]],
    index: str,
    sorts: bool,
) -> None:
    for n in range(20):
        await store.add_version(version(f"i{n}", 1, last_updated=WHEN + timedelta(seconds=n)))
    await store.add_version(version("i3", 2))

    with statements_run(store) as seen:
        await call(store)
    assert len(seen) == 1, seen
    if database.kind != "sqlite":
        return
    statement, parameters = seen[0]
    async with store.engine.connect() as connection:
        bound = () if parameters == FAST else parameters
        explained = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", bound)
        plan = " | ".join(str(step["detail"]) for step in explained.mappings())
    assert f"INDEX {index} " in f"{plan} ", plan
    assert ("TEMP B-TREE" in plan) == sorts, plan


async def test_current_on_sqlite_is_one_primary_key_probe_off_the_async_driver(
    store: SqlMetadataStore, database: Database
) -> None:
    """The read hot path (metadata/fastread.py): no SQLAlchemy statement, one PK probe."""
    for n in range(5):
        await store.add_version(version("i3", n + 1))
    with statements_run(store) as seen:
        found = await store.current("i3")
    assert found is not None
    assert found.version == 5
    if database.kind != "sqlite":
        assert len(seen) == 1
        return
    assert [parameters for _, parameters in seen] == [FAST]  # no SQLAlchemy statement
    assert isinstance(store, SqliteMetadataStore)
    plan_rows = store.fast._connection.execute(f"EXPLAIN QUERY PLAN {fastread._NEWEST}", ("i3",))
    plan = " | ".join(str(row[-1]) for row in plan_rows)
    assert f"INDEX {PRIMARY_KEY} " in f"{plan} ", plan
    assert "TEMP B-TREE" not in plan, plan


async def test_current_sees_writes_of_another_store_at_once(
    store: SqlMetadataStore, database: Database
) -> None:
    """Another process (here: another store on the same file) writes; the fast reader sees it."""
    other = await SqlMetadataStore.open(database.url)
    try:
        await other.add_version(version("x", 1))
        assert (await store.current("x")) == version("x", 1)
        await other.add_version(version("x", 2))
        assert (await store.current("x")) == version("x", 2)
    finally:
        await other.close()


async def test_adding_a_version_is_one_insert_and_one_update_in_one_transaction(
    store: SqlMetadataStore,
) -> None:
    await store.add_version(version("a", 1))
    with statements_run(store) as seen:
        await store.add_version(version("a", 2))
    assert [statement.split()[0] for statement, _ in seen] == ["INSERT", "UPDATE"]
    assert await store.search(CatalogueQuery()) == [version("a", 2)]
