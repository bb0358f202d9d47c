"""The MetadataStore contract for ``expunge`` and ``last_expunged``, on every database."""

from __future__ import annotations

import pytest

from fhirbin.metadata.base import AuditQuery, HistoryQuery
from fhirbin.metadata.sql import SqlMetadataStore
from tests.metadata.support import SHA, Database, marker, version
from tests.metadata.test_metadata_audit import record

pytestmark = pytest.mark.anyio

OTHER = "cd" * 32


async def test_expunge_removes_every_version_and_remembers_the_last_number(
    store: SqlMetadataStore,
) -> None:
    await store.add_version(version("a", 1))
    await store.add_version(version("a", 2, sha256=OTHER))
    await store.add_version(marker("a", 3))
    await store.add_version(version("b", 1))

    gone = await store.expunge("a")

    assert gone is not None
    assert (gone.versions, gone.last_version, gone.contents) == (3, 3, frozenset({SHA, OTHER}))
    assert await store.current("a") is None
    assert await store.get_version("a", 1) is None
    assert await store.history(HistoryQuery(binary_id="a")) == []
    assert await store.last_expunged("a") == 3
    assert await store.last_expunged("b") == 0
    assert await store.current("b") == version("b", 1)
    assert await store.referenced([SHA, OTHER]) == {SHA}  # b still names SHA


async def test_expunging_an_unknown_id_stores_nothing(store: SqlMetadataStore) -> None:
    assert await store.expunge("nobody", record(1)) is None
    assert await store.last_expunged("nobody") == 0
    assert await store.search_audit(AuditQuery()) == []


async def test_the_audit_record_is_stored_with_the_expunge(store: SqlMetadataStore) -> None:
    await store.add_version(version("a", 1))
    await store.expunge("a", record(1))
    assert [r.id for r in await store.search_audit(AuditQuery())] == [record(1).id]


async def test_a_second_expunge_keeps_the_highest_number(store: SqlMetadataStore) -> None:
    await store.add_version(version("a", 1))
    await store.add_version(version("a", 2))
    await store.expunge("a")
    await store.add_version(version("a", 3))
    gone = await store.expunge("a")
    assert gone is not None
    assert (gone.versions, gone.last_version) == (1, 3)
    assert await store.last_expunged("a") == 3


async def test_every_process_sees_the_expunge_at_once(database: Database) -> None:
    # On SQLite the other process remembers current versions until the change signal moves.
    writer, reader = await database.open(), await database.open(migrate=False)
    try:
        await writer.add_version(version("a", 1))
        assert await reader.current("a") == version("a", 1)
        await writer.expunge("a")
        assert await reader.current("a") is None
    finally:
        await writer.close()
        await reader.close()
