"""The MetadataStore contract, run against every database the SQL store supports.

Only SQLite (a real file) is wired up today. A PostgreSQL entry in ``DATABASES`` needs nothing
but a function returning the URL of a fresh, empty database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from fhirbin.metadata.base import (
    BinaryVersion,
    Client,
    ClientExists,
    MetadataStore,
    VersionConflict,
)
from fhirbin.metadata.migrate import head_revision, migrate, schema_revision
from fhirbin.metadata.schema import metadata
from fhirbin.metadata.sql import SqlMetadataStore, from_micros, sqlite_url, to_micros

pytestmark = pytest.mark.anyio

WHEN = datetime(2025, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)
SHA = "ab" * 32


@dataclass(frozen=True)
class Database:
    """A database the store can open any number of times, like several processes would."""

    kind: str
    url: str

    async def open(self, *, migrate: bool = True) -> SqlMetadataStore:
        return await SqlMetadataStore.open(self.url, migrate=migrate)


DATABASES: dict[str, Callable[[Path], str]] = {
    # In a folder that does not exist yet: opening the store creates it.
    "sqlite": lambda tmp_path: sqlite_url(tmp_path / "catalogue" / "fhirbin.db"),
}


@pytest.fixture(params=sorted(DATABASES))
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    return Database(request.param, DATABASES[request.param](tmp_path))


@pytest.fixture
async def store(database: Database) -> AsyncIterator[SqlMetadataStore]:
    opened = await database.open()
    yield opened
    await opened.close()


def version(binary_id: str = "a", number: int = 1, **changes: object) -> BinaryVersion:
    base = BinaryVersion(
        id=binary_id,
        version=number,
        last_updated=WHEN + timedelta(seconds=number),
        content_type="application/pdf",
        security_context="Patient/123",
        size=1234,
        sha256=SHA,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def marker(binary_id: str, number: int) -> BinaryVersion:
    return version(binary_id, number, deleted=True, sha256=None, size=0, content_type="")


def a_client(client_id: str = "app", created_at: datetime = WHEN) -> Client:
    return Client(client_id, f"{client_id} name", "system/Binary.rs", "$argon2id$...", created_at)


# Migrations.


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


async def test_migrated_schema_is_exactly_the_table_definitions(store: SqlMetadataStore) -> None:
    def differences(connection: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))

    def primary_key_and_indexes(connection: Connection) -> tuple[object, ...]:
        inspector = inspect(connection)
        return (
            inspector.get_pk_constraint("binary_version")["constrained_columns"],
            sorted(index["name"] or "" for index in inspector.get_indexes("binary_version")),
            inspector.get_pk_constraint("client")["constrained_columns"],
        )

    async with store.engine.connect() as connection:
        assert await connection.run_sync(differences) == []
        assert await connection.run_sync(primary_key_and_indexes) == (
            ["id", "version"],
            ["ix_binary_version_last_updated", "ix_binary_version_sha256"],
            ["client_id"],
        )


async def test_concurrent_migrations_of_a_new_database_both_succeed(database: Database) -> None:
    await asyncio.gather(migrate(database.url), migrate(database.url))
    store = await database.open(migrate=False)
    try:
        assert await schema_revision(store.engine) == head_revision()
    finally:
        await store.close()


async def test_opening_without_migrate_leaves_the_database_unmigrated(database: Database) -> None:
    store = await database.open(migrate=False)
    try:
        assert await schema_revision(store.engine) is None
    finally:
        await store.close()


# Binary versions.


async def test_add_then_current_round_trips_every_field_to_the_microsecond_in_utc(
    store: SqlMetadataStore,
) -> None:
    stored = version(security_context=None)
    await store.add_version(stored)
    found = await store.current("a")
    assert found == stored
    assert found is not None
    assert found.last_updated.microsecond == 535897
    assert found.last_updated.utcoffset() == timedelta(0)


async def test_timestamps_in_other_zones_are_stored_as_the_same_instant_in_utc(
    store: SqlMetadataStore,
) -> None:
    paris = WHEN.astimezone(timezone(timedelta(hours=1)))
    await store.add_version(version(last_updated=paris))
    found = await store.current("a")
    assert found is not None
    assert found.last_updated == paris
    assert found.last_updated.tzinfo == UTC


async def test_naive_timestamps_are_refused(store: SqlMetadataStore) -> None:
    with pytest.raises(ValueError, match="naive"):
        await store.add_version(version(last_updated=datetime(2025, 1, 1)))
    assert await store.current("a") is None


def test_microsecond_conversion_is_exact_on_both_sides_of_the_epoch() -> None:
    for when in (
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        WHEN,
    ):
        assert from_micros(to_micros(when)) == when
    assert to_micros(datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) == -1


async def test_current_is_the_highest_version_and_none_for_an_unknown_id(
    store: SqlMetadataStore,
) -> None:
    for number in (1, 2, 3):
        await store.add_version(version("a", number, size=number))
    await store.add_version(version("b", 1))
    current = await store.current("a")
    assert current is not None
    assert (current.version, current.size) == (3, 3)
    assert await store.current("never-stored") is None


async def test_a_deletion_marker_is_the_current_version_until_a_newer_one(
    store: SqlMetadataStore,
) -> None:
    await store.add_version(version("a", 1))
    await store.add_version(marker("a", 2))
    assert await store.current("a") == marker("a", 2)
    await store.add_version(version("a", 3))
    assert await store.current("a") == version("a", 3)


async def test_current_many_gives_the_newest_live_version_of_each_id_ordered_by_id(
    store: SqlMetadataStore,
) -> None:
    await store.add_version(version("b", 1))
    await store.add_version(version("b", 2))
    await store.add_version(version("a", 1))
    await store.add_version(version("Z", 1))  # uppercase sorts before lowercase, bytewise
    await store.add_version(version("gone", 1))
    await store.add_version(marker("gone", 2))
    await store.add_version(marker("revived", 1))
    await store.add_version(version("revived", 2))

    found = await store.current_many(["b", "gone", "unknown", "a", "revived", "Z", "b"])
    assert found == [version("Z", 1), version("a", 1), version("b", 2), version("revived", 2)]


async def test_current_all_gives_the_newest_live_version_of_every_id_ordered_by_id(
    store: SqlMetadataStore,
) -> None:
    assert await store.current_all() == []
    await store.add_version(version("b", 1))
    await store.add_version(version("b", 2))
    await store.add_version(version("a", 1))
    await store.add_version(version("Z", 1))
    await store.add_version(version("gone", 1))
    await store.add_version(marker("gone", 2))
    await store.add_version(marker("revived", 1))
    await store.add_version(version("revived", 2))

    found = await store.current_all()
    assert found == [version("Z", 1), version("a", 1), version("b", 2), version("revived", 2)]


async def test_current_many_of_no_ids_is_empty(store: SqlMetadataStore) -> None:
    assert await store.current_many([]) == []


async def test_current_many_handles_more_ids_than_one_query_takes(
    store: SqlMetadataStore,
) -> None:
    ids = [f"id-{n:04d}" for n in range(1200)]
    for binary_id in ids[::100]:
        await store.add_version(version(binary_id, 1))
    found = await store.current_many(ids)
    assert [v.id for v in found] == ids[::100]


async def test_adding_an_existing_version_raises_version_conflict_and_changes_nothing(
    store: SqlMetadataStore,
) -> None:
    await store.add_version(version("a", 1))
    with pytest.raises(VersionConflict):
        await store.add_version(version("a", 1, content_type="text/plain", size=1))
    assert await store.current("a") == version("a", 1)


async def test_an_invalid_row_is_an_integrity_error_not_a_conflict(
    store: SqlMetadataStore,
) -> None:
    with pytest.raises(IntegrityError):
        await store.add_version(version(content_type=None))
    assert await store.current("a") is None


async def test_two_stores_racing_for_the_same_version_exactly_one_wins(
    database: Database,
) -> None:
    first, second = await database.open(), await database.open(migrate=False)
    try:
        for round_ in range(10):
            binary_id = f"race-{round_}"
            outcomes = await asyncio.gather(
                first.add_version(version(binary_id, 1, content_type="first/racer")),
                second.add_version(version(binary_id, 1, content_type="second/racer")),
                return_exceptions=True,
            )
            winners = [n for n, outcome in enumerate(outcomes) if outcome is None]
            losers = [o for o in outcomes if isinstance(o, VersionConflict)]
            assert len(winners) == 1, outcomes
            assert len(losers) == 1, outcomes
            current = await second.current(binary_id)
            assert current is not None
            assert current.content_type == ("first/racer", "second/racer")[winners[0]]
    finally:
        await first.close()
        await second.close()


# Clients.


async def test_a_client_round_trips_and_an_unknown_one_is_none(store: SqlMetadataStore) -> None:
    await store.add_client(a_client("app"))
    assert await store.get_client("app") == a_client("app")
    assert await store.get_client("nobody") is None


async def test_adding_a_duplicate_client_raises_and_keeps_the_original(
    store: SqlMetadataStore,
) -> None:
    await store.add_client(a_client("app"))
    with pytest.raises(ClientExists):
        await store.add_client(replace(a_client("app"), name="impostor"))
    assert await store.get_client("app") == a_client("app")


async def test_clients_are_listed_oldest_first_revoked_ones_included(
    store: SqlMetadataStore,
) -> None:
    await store.add_client(a_client("second", WHEN + timedelta(microseconds=1)))
    await store.add_client(a_client("first", WHEN))
    await store.add_client(a_client("third", WHEN + timedelta(days=1)))
    assert await store.revoke_client("first", WHEN + timedelta(days=2))
    listed = await store.list_clients()
    assert [c.client_id for c in listed] == ["first", "second", "third"]
    assert [c.active for c in listed] == [False, True, True]


async def test_revoking_records_the_first_revocation_only(store: SqlMetadataStore) -> None:
    await store.add_client(a_client("app"))
    revoked = WHEN + timedelta(hours=1, microseconds=7)
    assert await store.revoke_client("app", revoked) is True
    assert await store.revoke_client("app", revoked + timedelta(days=1)) is True
    found = await store.get_client("app")
    assert found is not None
    assert found.revoked_at == revoked
    assert not found.active


async def test_revoking_an_unknown_client_returns_false(store: SqlMetadataStore) -> None:
    assert await store.revoke_client("nobody", WHEN) is False
    assert await store.list_clients() == []


# Durability and the SQLite setup.


async def test_data_survives_closing_and_reopening_the_database(database: Database) -> None:
    store = await database.open()
    await store.add_version(version("a", 1))
    await store.add_version(marker("a", 2))
    await store.add_client(a_client("app"))
    await store.close()

    reopened = await database.open()
    try:
        assert await reopened.current("a") == marker("a", 2)
        assert await reopened.get_client("app") == a_client("app")
    finally:
        await reopened.close()


async def test_sqlite_connections_use_wal_normal_sync_foreign_keys_and_a_busy_timeout(
    store: SqlMetadataStore, database: Database
) -> None:
    if database.kind != "sqlite":
        pytest.skip("SQLite connection settings")
    async with store.engine.connect() as connection:
        settings = [
            (await connection.exec_driver_sql(f"PRAGMA {name}")).scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        ]
    assert settings == ["wal", 1, 1, 5000]


async def test_an_in_memory_sqlite_store_is_migrated_on_open() -> None:
    store = await SqlMetadataStore.open("sqlite+aiosqlite://")
    try:
        await store.add_version(version())
        assert await store.current("a") == version()
    finally:
        await store.close()


async def test_the_sql_store_is_a_metadata_store(store: SqlMetadataStore) -> None:
    as_protocol: MetadataStore = store  # the real check is mypy's, on this assignment
    assert await as_protocol.current_many(["x"]) == []
