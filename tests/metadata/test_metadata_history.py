"""History: every version, deletion markers included, newest first (MetadataStore.history)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from fhirbin.metadata.base import BinaryVersion, HistoryQuery, Keyset
from fhirbin.metadata.sql import SqlMetadataStore, to_micros
from tests.metadata.support import (
    WHEN,
    expected_history,
    expected_history_matches,
    keyset,
    marker,
    version,
)

pytestmark = pytest.mark.anyio


def at(seconds: int) -> datetime:
    return WHEN + timedelta(seconds=seconds)


def us(seconds: int) -> int:
    return to_micros(at(seconds))


def v(binary_id: str, number: int, seconds: int) -> BinaryVersion:
    return version(binary_id, number, last_updated=at(seconds))


def gone(binary_id: str, number: int, seconds: int) -> BinaryVersion:
    return marker(binary_id, number, last_updated=at(seconds))


# a: created, updated, deleted, recreated; b and c share timestamps with a and each other.
ROWS = [
    v("a", 1, 1),
    v("b", 1, 1),
    v("a", 2, 2),
    v("c", 1, 2),
    gone("a", 3, 3),
    gone("c", 2, 3),
    v("a", 4, 5),
]


async def stored(store: SqlMetadataStore) -> None:
    for row in ROWS:
        await store.add_version(row)


def labels(versions: list[BinaryVersion]) -> list[str]:
    return [f"{found.id}{found.version}" for found in versions]


async def test_history_of_an_id_is_newest_first_with_deletion_markers(
    store: SqlMetadataStore,
) -> None:
    await stored(store)
    found = await store.history(HistoryQuery(binary_id="a"))
    assert found == [v("a", 4, 5), gone("a", 3, 3), v("a", 2, 2), v("a", 1, 1)]
    assert await store.count_history(HistoryQuery(binary_id="a")) == 4
    assert await store.history(HistoryQuery(binary_id="unknown")) == []
    assert await store.count_history(HistoryQuery(binary_id="unknown")) == 0


async def test_type_history_breaks_ties_on_last_updated_by_id_then_version_descending(
    store: SqlMetadataStore,
) -> None:
    await stored(store)
    await store.add_version(v("a", 5, 5))  # same instant as a4: version breaks the tie
    found = await store.history(HistoryQuery())
    assert labels(found) == ["a5", "a4", "c2", "a3", "c1", "a2", "b1", "a1"]
    assert await store.count_history(HistoryQuery()) == 8


async def test_since_is_inclusive(store: SqlMetadataStore) -> None:
    await stored(store)
    assert labels(await store.history(HistoryQuery(since_us=us(3)))) == ["a4", "c2", "a3"]
    assert labels(await store.history(HistoryQuery(binary_id="a", since_us=us(2)))) == [
        "a4",
        "a3",
        "a2",
    ]
    assert await store.count_history(HistoryQuery(since_us=us(3))) == 3
    assert await store.history(HistoryQuery(since_us=us(6))) == []


async def test_paging_history_forward_and_backward_yields_every_version_once(
    store: SqlMetadataStore,
) -> None:
    await stored(store)
    everything = labels(await store.history(HistoryQuery()))

    forward: list[str] = []
    after: Keyset | None = None
    while page := await store.history(HistoryQuery(after=after, limit=2)):
        forward += labels(page)
        after = keyset(page[-1])
    assert forward == everything

    backward: list[list[str]] = []
    before = Keyset(-(10**18), "", 0)  # older than everything: the end of newest-first
    while page := await store.history(HistoryQuery(before=before, limit=3)):
        backward.insert(0, labels(page))
        before = keyset(page[0])
    assert backward == [["a4"], ["c2", "a3", "c1"], ["a2", "b1", "a1"]]


async def test_count_history_ignores_paging(store: SqlMetadataStore) -> None:
    await stored(store)
    mark = keyset(v("a", 2, 2))
    paged = HistoryQuery(after=mark, before=mark, limit=1)
    assert await store.history(paged) == []
    assert await store.count_history(paged) == len(ROWS)


async def test_history_agrees_with_the_reference_on_random_queries(
    store: SqlMetadataStore,
) -> None:
    rng = random.Random(1127)
    rows: list[BinaryVersion] = []
    for n in range(30):
        seconds = rng.randrange(10)
        for number in range(1, rng.randrange(1, 5) + 1):
            seconds += rng.randrange(2)
            row = (
                marker(f"h{n:02d}", number) if rng.random() < 0.2 else version(f"h{n:02d}", number)
            )
            rows.append(replace(row, last_updated=at(seconds)))
    for row in rows:
        await store.add_version(row)

    def mark() -> Keyset | None:
        if rng.random() < 0.5:
            return None
        if rng.random() < 0.7:
            return keyset(rng.choice(rows))
        return Keyset(us(rng.randrange(15)), f"h{rng.randrange(30):02d}", rng.randrange(6))

    for _ in range(200):
        query = HistoryQuery(
            binary_id=rng.choice([None, f"h{rng.randrange(32):02d}"]),
            since_us=rng.choice([None, us(rng.randrange(-1, 15))]),
            after=mark(),
            before=mark(),
            limit=rng.randrange(10),
        )
        assert await store.history(query) == expected_history(rows, query), query
        assert await store.count_history(query) == len(expected_history_matches(rows, query))
