"""What the metadata tests share: the databases the contract runs against, and sample rows.

``DATABASES`` maps each kind to a function returning the URL of a fresh, empty database: a
SQLite file in the test's folder, or a database of the session's private PostgreSQL cluster
(``tests/pg_support.py``, the ``postgres`` fixture of ``tests/conftest.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fhirbin.metadata.base import (
    BinaryVersion,
    CatalogueQuery,
    Client,
    HistoryQuery,
    Keyset,
    UpdatedRange,
)
from fhirbin.metadata.sql import SqlMetadataStore, sqlite_url, to_micros
from tests.pg_support import PostgresCluster

WHEN = datetime(2025, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)
SHA = "ab" * 32


@dataclass(frozen=True)
class Database:
    """A database the store can open any number of times, like several processes would."""

    kind: str
    url: str

    async def open(self, *, migrate: bool = True) -> SqlMetadataStore:
        return await SqlMetadataStore.open(self.url, migrate=migrate)


def _postgres(request: pytest.FixtureRequest, _tmp_path: Path) -> str:
    # Asked for only when a PostgreSQL test runs: SQLite-only runs start no cluster.
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.new_database()


DATABASES: dict[str, Callable[[pytest.FixtureRequest, Path], str]] = {
    # In a folder that does not exist yet: opening the store creates it.
    "sqlite": lambda _request, tmp_path: sqlite_url(tmp_path / "catalogue" / "fhirbin.db"),
    "postgresql": _postgres,
}


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


def marker(binary_id: str, number: int, **changes: object) -> BinaryVersion:
    deletion = {"deleted": True, "sha256": None, "size": 0, "content_type": "", **changes}
    return version(binary_id, number, **deletion)


def a_client(client_id: str = "app", created_at: datetime = WHEN) -> Client:
    return Client(client_id, f"{client_id} name", "system/Binary.rs", "$argon2id$...", created_at)


# The query semantics of ``base``, written plainly in Python: what the SQL must agree with.


def micros(binary_version: BinaryVersion) -> int:
    return to_micros(binary_version.last_updated)


def keyset(binary_version: BinaryVersion) -> Keyset:
    return Keyset(micros(binary_version), binary_version.id, binary_version.version)


def _holds(updated: UpdatedRange, t: int) -> bool:
    inside = (updated.lower_us is None or updated.lower_us <= t) and (
        updated.upper_us is None or t < updated.upper_us
    )
    return inside == updated.inside


def _page(ordered: list[BinaryVersion], limit: int, from_the_end: bool) -> list[BinaryVersion]:
    # A ``before`` page is the ``limit`` rows right before the keyset, still in the query's order.
    if limit == 0:
        return []
    return ordered[-limit:] if from_the_end else ordered[:limit]


def expected_search(rows: Sequence[BinaryVersion], query: CatalogueQuery) -> list[BinaryVersion]:
    matching = expected_matches(rows, query)

    def key(row: BinaryVersion) -> tuple[int, str]:
        return (micros(row), row.id)

    def beyond(row: BinaryVersion, mark: Keyset, descending: bool) -> bool:
        mark_key = (mark.last_updated_us, mark.id)
        return key(row) < mark_key if descending else key(row) > mark_key

    ordered = sorted(matching, key=key, reverse=query.descending)
    if query.after is not None:
        ordered = [r for r in ordered if beyond(r, query.after, query.descending)]
    if query.before is not None:
        ordered = [r for r in ordered if beyond(r, query.before, not query.descending)]
    return _page(ordered, query.limit, from_the_end=query.before is not None)


def expected_matches(rows: Sequence[BinaryVersion], query: CatalogueQuery) -> list[BinaryVersion]:
    """The current non-deleted versions matching ``ids`` and ``updated``, in no order."""
    current: dict[str, BinaryVersion] = {}
    for row in rows:
        if row.id not in current or row.version > current[row.id].version:
            current[row.id] = row
    return [
        row
        for row in current.values()
        if not row.deleted
        and (query.ids is None or row.id in query.ids)
        and all(_holds(updated, micros(row)) for updated in query.updated)
    ]


def expected_history(rows: Sequence[BinaryVersion], query: HistoryQuery) -> list[BinaryVersion]:
    def key(row: BinaryVersion) -> tuple[int, str, int]:
        return (micros(row), row.id, row.version)

    ordered = sorted(expected_history_matches(rows, query), key=key, reverse=True)
    if query.after is not None:
        after = query.after
        ordered = [r for r in ordered if key(r) < (after.last_updated_us, after.id, after.version)]
    if query.before is not None:
        before = query.before
        ordered = [
            r for r in ordered if key(r) > (before.last_updated_us, before.id, before.version)
        ]
    return _page(ordered, query.limit, from_the_end=query.before is not None)


def expected_history_matches(
    rows: Sequence[BinaryVersion], query: HistoryQuery
) -> list[BinaryVersion]:
    return [
        row
        for row in rows
        if (query.binary_id is None or row.id == query.binary_id)
        and (query.since_us is None or micros(row) >= query.since_us)
    ]
