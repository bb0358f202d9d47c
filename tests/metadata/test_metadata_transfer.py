"""Moving an embedded catalogue into PostgreSQL (metadata/transfer.py): SQLite -> PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from fhirbin.metadata import transfer
from fhirbin.metadata.base import AuditQuery, AuditRecord, CatalogueQuery, HistoryQuery
from fhirbin.metadata.sql import SqlMetadataStore, sqlite_url
from tests.metadata.support import WHEN, a_client, marker, version
from tests.metadata.test_metadata_keys import key
from tests.pg_support import PostgresCluster

pytestmark = pytest.mark.anyio


def audit(n: int) -> AuditRecord:
    return AuditRecord(
        id=f"r{n:03d}",
        recorded=WHEN + timedelta(microseconds=n // 2),  # pairs share a timestamp
        action="R",
        subtype="read",
        outcome="0",
        status=200,
        entity=f"Binary/b{n % 4}",
        client_id="app",
        patient="Patient/1" if n % 3 else None,
    )


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[SqlMetadataStore]:
    store = await SqlMetadataStore.open(sqlite_url(tmp_path / "embedded.db"))
    # History with deletions and revivals, ids whose order differs by collation, and versions
    # sharing a timestamp.
    await store.add_version(version("a", 1), audit(100))
    await store.add_version(version("a", 2, size=5))
    await store.add_version(marker("a", 3))
    await store.add_version(version("B", 1, last_updated=WHEN))
    await store.add_version(version("_x", 1, last_updated=WHEN, security_context=None))
    await store.add_version(marker("gone", 1))
    await store.add_version(version("gone", 2, sha256="cd" * 32))
    for n in range(7):
        await store.add_version(version(f"many-{n}", 1, last_updated=WHEN))
    await store.add_client(a_client("app"))
    await store.add_client(a_client("old", WHEN - timedelta(days=1)))
    assert await store.revoke_client("old", WHEN + timedelta(hours=1))
    await store.add_signing_key(key("k1", 0))
    await store.add_signing_key(key("k2", 5))
    await store.add_audit([audit(n) for n in range(11)])
    yield store
    await store.close()


async def snapshot(store: SqlMetadataStore) -> tuple[object, ...]:
    return (
        await store.history(HistoryQuery(limit=10_000)),
        await store.search(CatalogueQuery(limit=10_000)),
        await store.current_all(),
        [await store.current(i) for i in ("a", "B", "_x", "gone", "many-3")],
        await store.list_clients(),
        await store.signing_keys(),
        await store.search_audit(AuditQuery(limit=10_000)),
    )


async def test_a_copy_to_postgresql_keeps_everything_and_a_second_copy_adds_nothing(
    source: SqlMetadataStore, postgres: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transfer, "PAGE", 3)  # several pages of every kind
    target = await SqlMetadataStore.open(postgres.new_database())
    try:
        seen: list[tuple[str, int]] = []
        counts = await transfer.copy_catalogue(
            source, target, lambda kind, rows: seen.append((kind, rows))
        )
        assert counts == {"versions": 14, "clients": 2, "signing_keys": 2, "audit": 12}
        assert ("versions", 14) in seen
        assert ("audit", 12) in seen
        assert await snapshot(target) == await snapshot(source)
        assert (await target.signing_keys())[0].kid == "k2"

        again = await transfer.copy_catalogue(source, target)
        assert again == {"versions": 0, "clients": 0, "signing_keys": 0, "audit": 0}
        assert await snapshot(target) == await snapshot(source)

        # The copied catalogue is a working one: writes move "current" as usual.
        await target.add_version(version("gone", 3, size=9))
        assert await target.current("gone") == version("gone", 3, size=9)
    finally:
        await target.close()


async def test_an_interrupted_copy_resumes_where_rows_are_missing(
    source: SqlMetadataStore, postgres: PostgresCluster
) -> None:
    target = await SqlMetadataStore.open(postgres.new_database())
    try:
        # As if a first run stopped after some rows: a version of "a" and one audit record.
        await target.import_versions([version("a", 1)])
        await target.import_audit([audit(3)])
        counts = await transfer.copy_catalogue(source, target)
        assert counts["versions"] == 13
        assert counts["audit"] == 11
        assert await snapshot(target) == await snapshot(source)
        # Importing an older version never takes "current" from a newer one.
        assert await target.import_versions([replace(version("zz", 2)), version("zz", 1)]) == 2
        assert await target.current("zz") == version("zz", 2)
        assert await target.search(CatalogueQuery(ids=frozenset({"zz"}))) == [version("zz", 2)]
    finally:
        await target.close()
