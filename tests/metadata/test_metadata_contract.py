"""The MetadataStore contract, run against every database the SQL store supports.

Versions and clients here; search and history in ``test_metadata_search`` and
``test_metadata_history``, schema migrations in ``test_metadata_migrations``. The databases are
listed in ``support.DATABASES``.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.exc import IntegrityError

from fhirbin.metadata.base import CatalogueQuery, ClientExists, MetadataStore, VersionConflict
from fhirbin.metadata.sql import SqlMetadataStore, from_micros, to_micros
from fhirbin.metadata.sqlite import SqliteMetadataStore
from tests.metadata.support import WHEN, Database, a_client, marker, version

pytestmark = pytest.mark.anyio


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
    assert await store.search(CatalogueQuery()) == [version("a", 1)]


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
            # The loser's transaction rolled back whole: search shows the winner, once.
            assert await first.search(CatalogueQuery(ids=frozenset({binary_id}))) == [current]
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


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_sqlite_write_connections_use_wal_full_sync_foreign_keys_and_a_busy_timeout(
    store: SqlMetadataStore, database: Database
) -> None:
    async with store.engine.connect() as connection:
        settings = [
            (await connection.exec_driver_sql(f"PRAGMA {name}")).scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        ]
    # synchronous=FULL (2): a commit that returned survives power loss (docs/development.md).
    assert settings == ["wal", 2, 1, 5000]
    assert isinstance(store, SqliteMetadataStore)
    writer = store.audit_writer._connection.execute("PRAGMA synchronous").fetchone()
    assert writer == (2,)


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
