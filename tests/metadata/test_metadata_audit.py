"""The audit records of the MetadataStore: add_audit, search_audit, and a write's record stored
in the write's own transaction (docs/security.md#audit)."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from fhirbin.metadata.base import AuditQuery, AuditRecord, VersionConflict
from fhirbin.metadata.schema import audit_event
from fhirbin.metadata.sql import SqlMetadataStore, to_micros
from tests.metadata.support import WHEN, version

pytestmark = pytest.mark.anyio


def record(number: int, **changes: object) -> AuditRecord:
    base = AuditRecord(
        id=f"00000000-0000-4000-8000-{number:012d}",
        recorded=WHEN + timedelta(seconds=number),
        action="R",
        subtype="read",
        outcome="0",
        status=200,
        entity="Binary/a",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def all_records(store: SqlMetadataStore) -> list[AuditRecord]:
    return await store.search_audit(AuditQuery(limit=10_000))


async def test_records_round_trip_with_every_field(store: SqlMetadataStore) -> None:
    full = record(
        1,
        client_id="app",
        subject="someone",
        source="192.0.2.7",
        entity_version=3,
        query="_id=a,b&_count=20",
        bytes_sent=12345,
        detail="The access token has expired",
        request_id="req-1",
        patient="p1",
        outcome="4",
        status=401,
    )
    bare = record(2, entity=None)
    await store.add_audit([full, bare])
    assert await all_records(store) == [full, bare]


async def test_adding_no_records_is_a_no_op(store: SqlMetadataStore) -> None:
    await store.add_audit([])
    assert await all_records(store) == []


async def test_a_batch_is_stored_whole_or_not_at_all(store: SqlMetadataStore) -> None:
    await store.add_audit([record(1)])
    # SQLite batches go through the plain driver (fastread.py), other databases SQLAlchemy.
    with pytest.raises((IntegrityError, sqlite3.IntegrityError)):
        await store.add_audit([record(2), record(1)])  # record 1 again: the batch fails
    assert [r.id for r in await all_records(store)] == [record(1).id]


async def test_search_by_entity_date_and_keyset(store: SqlMetadataStore) -> None:
    rows = [record(n, entity="Binary/a" if n % 2 else "Binary/b") for n in range(1, 11)]
    # Two records at the same instant: ordered by id.
    rows.append(record(11, recorded=rows[4].recorded, entity="Binary/a"))
    await store.add_audit(list(reversed(rows)))

    found = await store.search_audit(AuditQuery(entity="Binary/a", limit=100))
    expected = sorted((r for r in rows if r.entity == "Binary/a"), key=lambda r: (r.recorded, r.id))
    assert found == expected

    since, until = to_micros(rows[2].recorded), to_micros(rows[6].recorded)
    window = await store.search_audit(AuditQuery(since_us=since, until_us=until, limit=100))
    assert [r.id for r in window] == [
        r.id
        for r in sorted(rows, key=lambda r: (r.recorded, r.id))
        if since <= to_micros(r.recorded) < until
    ]

    # Keyset paging through the entity's records, two at a time, sees each exactly once.
    seen: list[AuditRecord] = []
    after = None
    while True:
        page = await store.search_audit(AuditQuery(entity="Binary/a", after=after, limit=2))
        if not page:
            break
        seen.extend(page)
        after = (to_micros(page[-1].recorded), page[-1].id)
    assert seen == expected


async def test_search_edge_cases(store: SqlMetadataStore) -> None:
    await store.add_audit([record(1), record(2)])
    assert await store.search_audit(AuditQuery(limit=0)) == []
    assert await store.search_audit(AuditQuery(since_us=5, until_us=5)) == []
    assert await store.search_audit(AuditQuery(entity="Binary/zzz")) == []
    assert await store.search_audit(AuditQuery(id=record(2).id)) == [record(2)]
    assert await store.search_audit(AuditQuery(limit=1)) == [record(1)]


async def test_a_write_and_its_record_are_stored_together(store: SqlMetadataStore) -> None:
    written = version("a", 1)
    audit = record(1, action="C", subtype="create", status=201, entity_version=1)
    await store.add_version(written, audit)
    assert await store.get_version("a", 1) == written
    assert await all_records(store) == [audit]


async def test_a_version_conflict_stores_neither_the_version_nor_its_record(
    store: SqlMetadataStore,
) -> None:
    await store.add_version(version("a", 1), record(1, action="C", subtype="create"))
    loser = version("a", 1, content_type="text/plain")
    with pytest.raises(VersionConflict):
        await store.add_version(loser, record(2, action="U", subtype="update"))
    assert await store.get_version("a", 1) == version("a", 1)
    assert [r.id for r in await all_records(store)] == [record(1).id]
    async with store.engine.connect() as connection:
        count = await connection.execute(select(func.count()).select_from(audit_event))
        assert count.scalar_one() == 1


async def test_a_failing_record_rolls_the_version_back(store: SqlMetadataStore) -> None:
    await store.add_audit([record(1)])
    # The audit insert fails (duplicate id) after the version row went in: neither stays.
    # SQLite batches go through the plain driver (fastread.py), other databases SQLAlchemy.
    with pytest.raises((IntegrityError, sqlite3.IntegrityError)):
        await store.add_version(version("b", 1), record(1))
    assert await store.get_version("b", 1) is None
    assert await store.current("b") is None
