"""Schema migrations: they build exactly the declared schema, and carry existing data forward."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.schema import CreateIndex

from fhirbin.metadata.base import CatalogueQuery, HistoryQuery
from fhirbin.metadata.engine import write_transaction
from fhirbin.metadata.migrate import alembic_config, head_revision, migrate, schema_revision
from fhirbin.metadata.schema import binary_version, metadata
from fhirbin.metadata.sql import SqlMetadataStore, to_micros
from tests.metadata.support import Database, marker, version

pytestmark = pytest.mark.anyio

INDEXES_0001 = ["ix_binary_version_last_updated", "ix_binary_version_sha256"]
INDEXES_HEAD = [
    "ix_binary_version_last_updated_id_version",
    "ix_binary_version_live",
    "ix_binary_version_sha256",
]


async def run_alembic(
    engine: AsyncEngine, action: Callable[[Config, str], None], revision: str
) -> None:
    """``alembic upgrade/downgrade <revision>`` on ``engine``, as ``migrate.upgrade`` runs it."""

    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        action(config, revision)

    async with write_transaction(engine) as connection:
        await connection.run_sync(run)


async def index_names(engine: AsyncEngine) -> list[str]:
    def names(connection: Connection) -> list[str]:
        return sorted(i["name"] or "" for i in inspect(connection).get_indexes("binary_version"))

    async with engine.connect() as connection:
        return await connection.run_sync(names)


async def test_migrations_create_the_schema_and_running_them_again_changes_nothing(
    database: Database,
) -> None:
    await migrate(database.url)
    store = await database.open(migrate=False)
    try:
        assert await schema_revision(store.engine) == head_revision()
        await store.add_version(version())
        await migrate(database.url)
        await migrate(database.url)
        assert await schema_revision(store.engine) == head_revision()
        assert await store.current("a") == version()
    finally:
        await store.close()


async def test_migrated_schema_is_exactly_the_table_definitions(
    store: SqlMetadataStore, database: Database
) -> None:
    def differences(connection: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))

    def primary_keys(connection: Connection) -> tuple[object, ...]:
        inspector = inspect(connection)
        return (
            inspector.get_pk_constraint("binary_version")["constrained_columns"],
            inspector.get_pk_constraint("client")["constrained_columns"],
        )

    async with store.engine.connect() as connection:
        assert await connection.run_sync(differences) == []
        assert await connection.run_sync(primary_keys) == (["id", "version"], ["client_id"])
    assert await index_names(store.engine) == INDEXES_HEAD

    if database.kind == "sqlite":
        # compare_metadata ignores a partial index's WHERE, which decides whether queries can
        # use it: compare the DDL SQLite kept with the declared index, word for word.
        async with store.engine.connect() as connection:
            schema = await connection.exec_driver_sql("SELECT name, sql FROM sqlite_master")
            stored = {entry["name"]: entry["sql"] for entry in schema.mappings()}
            for index in binary_version.indexes:
                declared = str(CreateIndex(index).compile(dialect=connection.dialect)).strip()
                assert stored[index.name] == declared
    if database.kind == "postgresql":
        # The same check on PostgreSQL, in the form it stores index definitions.
        async with store.engine.connect() as connection:
            found = await connection.exec_driver_sql(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_binary_version_live'"
            )
            assert found.scalar_one().endswith(
                "(last_updated, id) WHERE ((is_current = true) AND (deleted = false))"
            )


async def test_six_concurrent_migrations_of_a_new_database_all_succeed(database: Database) -> None:
    # As six nodes starting at once: each migrate() has its own thread, event loop and engine.
    await asyncio.gather(*(migrate(database.url) for _ in range(6)))
    store = await database.open(migrate=False)
    try:
        assert await schema_revision(store.engine) == head_revision()
        await store.add_version(version())  # the schema is whole, created once
        assert await store.current("a") == version()
    finally:
        await store.close()


ORDERED_COLUMNS = [
    ("audit_event", "id"),
    ("binary_version", "id"),
    ("binary_version", "sha256"),
    ("client", "client_id"),
    ("expunged", "id"),
    ("signing_key", "kid"),
]


# PostgreSQL only: SQLite compares text by code point (BINARY) without being told.
@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
async def test_ordered_ids_compare_by_code_point_on_postgresql(
    store: SqlMetadataStore, database: Database
) -> None:
    query = sa.text(
        "SELECT table_name, column_name, collation_name FROM information_schema.columns"
        " WHERE table_schema = 'public' AND collation_name IS NOT NULL"
        " ORDER BY table_name, column_name"
    )
    async with store.engine.connect() as connection:
        collated = [tuple(row) for row in await connection.execute(query)]
    assert collated == [(table, column, "C") for table, column in ORDERED_COLUMNS]


async def test_downgrading_0006_restores_the_default_collation(
    store: SqlMetadataStore, database: Database
) -> None:
    await store.add_version(version("B", 1))
    await store.add_version(version("a", 1))
    await run_alembic(store.engine, command.downgrade, "0005")
    if database.kind == "postgresql":
        query = sa.text(
            "SELECT count(*) FROM information_schema.columns"
            " WHERE table_schema = 'public' AND collation_name = 'C'"
        )
        async with store.engine.connect() as connection:
            assert (await connection.execute(query)).scalar_one() == 0
    await run_alembic(store.engine, command.upgrade, "head")
    assert [v.id for v in await store.current_all()] == ["B", "a"]


async def test_opening_without_migrate_leaves_the_database_unmigrated(database: Database) -> None:
    store = await database.open(migrate=False)
    try:
        assert await schema_revision(store.engine) is None
    finally:
        await store.close()


async def test_upgrading_a_0001_catalogue_marks_the_highest_version_of_each_id_current(
    database: Database,
) -> None:
    rows = [
        version("kept", 1),
        version("kept", 2),
        version("single", 1),
        version("gone", 1),
        marker("gone", 2),
        marker("revived", 1),
        version("revived", 2),
    ]
    old = await database.open(migrate=False)
    try:
        await run_alembic(old.engine, command.upgrade, "0001")
        # Rows as release 0001 wrote them: no is_current column yet.
        table = sa.table("binary_version", *(sa.column(c.name) for c in binary_version.columns))
        async with write_transaction(old.engine) as connection:
            for row in rows:
                values = {**vars(row), "last_updated": to_micros(row.last_updated)}
                await connection.execute(sa.insert(table).values(values))
    finally:
        await old.close()

    store = await database.open()
    try:
        assert await schema_revision(store.engine) == head_revision()
        live = [version("kept", 2), version("single", 1), version("revived", 2)]
        by_id = sorted(live, key=lambda v: v.id)
        assert await store.current_all() == by_id
        by_update = sorted(live, key=lambda v: (v.last_updated, v.id))
        assert await store.search(CatalogueQuery()) == by_update
        assert await store.count(CatalogueQuery()) == 3
        assert await store.count_history(HistoryQuery()) == len(rows)
        # Writing on top of migrated rows moves "current" as usual.
        await store.add_version(version("kept", 3))
        assert [v.version for v in await store.search(CatalogueQuery(ids=frozenset({"kept"})))] == [
            3
        ]
    finally:
        await store.close()


async def test_downgrading_to_0001_keeps_the_data_and_upgrading_again_restores_search(
    store: SqlMetadataStore,
) -> None:
    await store.add_version(version("a", 1))
    await store.add_version(version("a", 2))
    await store.add_version(version("b", 1))
    await store.add_version(marker("b", 2))

    await run_alembic(store.engine, command.downgrade, "0001")
    assert await schema_revision(store.engine) == "0001"
    assert await index_names(store.engine) == INDEXES_0001
    assert await store.current("a") == version("a", 2)

    await run_alembic(store.engine, command.upgrade, "head")
    assert await index_names(store.engine) == INDEXES_HEAD
    assert await store.search(CatalogueQuery()) == [version("a", 2)]
    assert await store.count_history(HistoryQuery()) == 4
