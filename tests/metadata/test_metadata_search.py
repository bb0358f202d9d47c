"""Search over current versions: filters, order, keyset paging and counts (MetadataStore.search).

Ids are lowercase letters and digits, so their order is the same bytewise and under any
database collation.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from fhirbin.metadata.base import (
    BinaryVersion,
    CatalogueQuery,
    HistoryQuery,
    Keyset,
    UpdatedRange,
)
from fhirbin.metadata.sql import SqlMetadataStore, to_micros
from tests.metadata.support import (
    WHEN,
    expected_matches,
    expected_search,
    keyset,
    marker,
    version,
)

pytestmark = pytest.mark.anyio

FAR = 10**18  # µs: beyond every timestamp in these tests, either way


def at(seconds: int) -> datetime:
    return WHEN + timedelta(seconds=seconds)


def us(seconds: int) -> int:
    return to_micros(at(seconds))


def live(binary_id: str, number: int, seconds: int) -> BinaryVersion:
    return version(binary_id, number, last_updated=at(seconds))


async def add_all(store: SqlMetadataStore, *versions: BinaryVersion) -> None:
    for added in versions:
        await store.add_version(added)


async def pages_forward(store: SqlMetadataStore, query: CatalogueQuery) -> list[list[str]]:
    pages: list[list[str]] = []
    after = query.after
    while page := await store.search(replace(query, after=after)):
        pages.append([v.id for v in page])
        after = keyset(page[-1])
    return pages


async def pages_backward(store: SqlMetadataStore, query: CatalogueQuery) -> list[list[str]]:
    """Pages from the end, with ``before``; listed first page first, like ``pages_forward``."""
    beyond_the_end = Keyset(-FAR if query.descending else FAR, "", 0)
    pages: list[list[str]] = []
    before = beyond_the_end
    while page := await store.search(replace(query, before=before)):
        pages.insert(0, [v.id for v in page])
        before = keyset(page[0])
    return pages


# Ten live ids; ties on last_updated (t=2: b, c, d; t=5: f, g) are broken by id.
TEN = [
    live("a", 1, 1),
    live("d", 1, 2),
    live("b", 1, 2),
    live("c", 1, 2),
    live("e", 1, 3),
    live("g", 1, 5),
    live("f", 1, 5),
    live("h", 1, 6),
    live("i", 1, 7),
    live("j", 1, 9),
]
ASCENDING = list("abcdefghij")


async def test_search_orders_by_last_updated_then_id_both_ways(store: SqlMetadataStore) -> None:
    await add_all(store, *TEN)
    assert [v.id for v in await store.search(CatalogueQuery())] == ASCENDING
    descending = await store.search(CatalogueQuery(descending=True))
    assert [v.id for v in descending] == ASCENDING[::-1]
    assert descending[0] == live("j", 1, 9)
    assert [v.id for v in await store.search(CatalogueQuery(limit=4))] == list("abcd")


@pytest.mark.parametrize("descending", [False, True], ids=["ascending", "descending"])
async def test_paging_with_after_and_with_before_yields_every_row_once(
    store: SqlMetadataStore, descending: bool
) -> None:
    await add_all(store, *TEN)
    query = CatalogueQuery(descending=descending, limit=3)
    forward = await pages_forward(store, query)
    order = ASCENDING[::-1] if descending else ASCENDING
    assert [i for page in forward for i in page] == order
    assert [len(page) for page in forward] == [3, 3, 3, 1]
    backward = await pages_backward(store, query)
    assert [i for page in backward for i in page] == order
    # Backwards, a page is the ``limit`` rows right before the keyset: the short page is first.
    assert [len(page) for page in backward] == [1, 3, 3, 3]


async def test_a_before_page_is_the_rows_right_before_the_keyset_in_the_querys_order(
    store: SqlMetadataStore,
) -> None:
    await add_all(store, *TEN)
    f = keyset(live("f", 1, 5))
    assert [v.id for v in await store.search(CatalogueQuery(before=f, limit=3))] == list("cde")
    ahead = CatalogueQuery(descending=True, before=f, limit=3)
    assert [v.id for v in await store.search(ahead)] == list("ihg")
    between = CatalogueQuery(after=keyset(live("b", 1, 2)), before=f)
    assert [v.id for v in await store.search(between)] == list("cde")


async def test_rows_added_while_paging_with_later_timestamps_do_not_disturb_the_pages(
    store: SqlMetadataStore,
) -> None:
    await add_all(store, *TEN)
    oldest_first = CatalogueQuery(limit=4)
    newest_first = CatalogueQuery(descending=True, limit=4)
    first_oldest = await store.search(oldest_first)
    first_newest = await store.search(newest_first)
    # Meanwhile, new ids later than any row (two of them tied).
    await add_all(store, live("new1", 1, 20), live("new0", 1, 20), live("k", 1, 21))

    rest = await pages_forward(store, replace(oldest_first, after=keyset(first_oldest[-1])))
    assert [v.id for v in first_oldest] == list("abcd")
    assert [i for page in rest for i in page] == [*"efghij", "new0", "new1", "k"]
    # Newest first, the new rows sort before the first page: the rest of the walk is unchanged.
    rest = await pages_forward(store, replace(newest_first, after=keyset(first_newest[-1])))
    assert [v.id for v in first_newest] == list("jihg")
    assert [i for page in rest for i in page] == list("fedcba")


async def test_search_shows_the_current_version_only_and_an_update_moves_it(
    store: SqlMetadataStore,
) -> None:
    await add_all(store, live("a", 1, 1), live("b", 1, 2), live("c", 1, 3))
    await store.add_version(live("a", 2, 4))
    found = await store.search(CatalogueQuery())
    assert found == [live("b", 1, 2), live("c", 1, 3), live("a", 2, 4)]
    assert await store.count(CatalogueQuery()) == 3


async def test_deleted_ids_leave_search_and_come_back_when_written_again(
    store: SqlMetadataStore,
) -> None:
    await add_all(store, live("a", 1, 1), live("b", 1, 2))
    await store.add_version(marker("a", 2, last_updated=at(3)))
    assert await store.search(CatalogueQuery()) == [live("b", 1, 2)]
    assert await store.count(CatalogueQuery()) == 1
    assert await store.search(CatalogueQuery(ids=frozenset({"a"}))) == []
    await store.add_version(live("a", 3, 4))
    assert await store.search(CatalogueQuery()) == [live("b", 1, 2), live("a", 3, 4)]


async def test_versions_added_out_of_order_leave_the_highest_one_current(
    store: SqlMetadataStore,
) -> None:
    await add_all(store, live("a", 3, 3), live("a", 1, 1), marker("a", 2, last_updated=at(2)))
    assert await store.search(CatalogueQuery()) == [live("a", 3, 3)]
    assert await store.current("a") == live("a", 3, 3)


@pytest.mark.parametrize(
    ("ranges", "ids"),
    [
        ((UpdatedRange(us(2), us(5)),), "bcde"),
        ((UpdatedRange(us(2), us(5), inside=False),), "afghij"),
        ((UpdatedRange(us(5), None),), "fghij"),
        ((UpdatedRange(None, us(5)),), "abcde"),
        ((UpdatedRange(us(5), None, inside=False),), "abcde"),
        ((UpdatedRange(None, us(5), inside=False),), "fghij"),
        ((UpdatedRange(None, None),), "abcdefghij"),
        ((UpdatedRange(None, None, inside=False),), ""),
        ((UpdatedRange(us(5), us(5)),), ""),
        ((UpdatedRange(us(2), us(7)), UpdatedRange(us(3), None)), "efgh"),
        ((UpdatedRange(us(2), us(7)), UpdatedRange(us(3), us(5), inside=False)), "bcdfgh"),
        (
            (UpdatedRange(None, us(3), inside=False), UpdatedRange(us(6), us(9), inside=False)),
            "efgj",
        ),
    ],
)
async def test_updated_ranges_inside_outside_and_open_all_hold_together(
    store: SqlMetadataStore, ranges: tuple[UpdatedRange, ...], ids: str
) -> None:
    await add_all(store, *TEN)
    query = CatalogueQuery(updated=ranges)
    assert [v.id for v in await store.search(query)] == list(ids)
    assert await store.count(query) == len(ids)
    backwards = await store.search(replace(query, descending=True, limit=2))
    assert [v.id for v in backwards] == list(ids[::-1][:2])


async def test_ids_restrict_search_and_an_empty_set_matches_nothing(
    store: SqlMetadataStore,
) -> None:
    await add_all(store, *TEN)
    query = CatalogueQuery(ids=frozenset({"j", "c", "a", "unknown"}))
    assert [v.id for v in await store.search(query)] == ["a", "c", "j"]
    assert await store.count(query) == 3
    assert await store.search(CatalogueQuery(ids=frozenset())) == []
    assert await store.count(CatalogueQuery(ids=frozenset())) == 0


async def test_more_ids_than_one_query_takes_still_give_one_ordered_page(
    store: SqlMetadataStore,
) -> None:
    # Stored ids spread over every chunk of 500; timestamps run against id order, so a page
    # has to be merged from several chunks.
    ids = [f"id{n:04d}" for n in range(1500)]
    stored = ids[::50]
    await add_all(store, *(live(i, 1, 1000 - n) for n, i in enumerate(stored)))
    query = CatalogueQuery(ids=frozenset(ids), limit=4)
    newest_ids_first = stored[::-1]
    assert [v.id for v in await store.search(query)] == newest_ids_first[:4]
    assert [i for page in await pages_forward(store, query) for i in page] == newest_ids_first
    assert [i for page in await pages_backward(store, query) for i in page] == newest_ids_first
    assert await store.count(query) == len(stored)


async def test_count_ignores_paging(store: SqlMetadataStore) -> None:
    await add_all(store, *TEN)
    mark = keyset(live("e", 1, 3))
    paged = CatalogueQuery(after=mark, before=mark, limit=1)
    assert await store.search(paged) == []
    assert await store.count(paged) == 10


async def test_a_zero_limit_gives_no_rows_and_a_negative_one_is_refused(
    store: SqlMetadataStore,
) -> None:
    await add_all(store, *TEN)
    assert await store.search(CatalogueQuery(limit=0)) == []
    with pytest.raises(ValueError, match="negative"):
        await store.search(CatalogueQuery(limit=-1))


async def test_get_version_finds_any_version_deletion_markers_included(
    store: SqlMetadataStore,
) -> None:
    await add_all(store, live("a", 1, 1), live("a", 2, 2), marker("a", 3))
    assert await store.get_version("a", 1) == live("a", 1, 1)
    assert await store.get_version("a", 3) == marker("a", 3)
    assert await store.get_version("a", 4) is None
    assert await store.get_version("b", 1) is None


async def test_search_and_count_agree_with_the_reference_on_random_queries(
    store: SqlMetadataStore,
) -> None:
    rng = random.Random(20251127)
    rows: list[BinaryVersion] = []
    for n in range(60):
        seconds = rng.randrange(20)  # few distinct timestamps: many ties
        for number in range(1, rng.choice([1, 1, 2, 3]) + 1):
            seconds += rng.randrange(3)
            deleted = rng.random() < 0.2
            added = marker(f"r{n:02d}", number) if deleted else version(f"r{n:02d}", number)
            rows.append(replace(added, last_updated=at(seconds)))
    await add_all(store, *rows)

    def bound() -> int | None:
        return None if rng.random() < 0.3 else us(rng.randrange(-1, 25))

    def mark() -> Keyset | None:
        if rng.random() < 0.5:
            return None
        if rng.random() < 0.7:
            return keyset(rng.choice(rows))
        return Keyset(us(rng.randrange(25)), f"r{rng.randrange(60):02d}x", 0)

    for _ in range(300):
        query = CatalogueQuery(
            ids=rng.choice([None, frozenset(f"r{rng.randrange(70):02d}" for _ in range(15))]),
            updated=tuple(
                UpdatedRange(bound(), bound(), rng.random() < 0.7) for _ in range(rng.randrange(3))
            ),
            descending=rng.random() < 0.5,
            after=mark(),
            before=mark(),
            limit=rng.randrange(8),
        )
        assert await store.search(query) == expected_search(rows, query), query
        assert await store.count(query) == len(expected_matches(rows, query)), query


async def test_ids_order_by_code_point_on_every_database(store: SqlMetadataStore) -> None:
    # Upper case, punctuation and lower case: code point order is "B" < "Z" < "_" < "a" < "b",
    # which a language's collation (the test PostgreSQL cluster's en-US) would not give.
    ids = ["b", "a", "_", "Z", "B"]
    for binary_id in ids:
        await store.add_version(version(binary_id, 1, last_updated=WHEN))
    assert [v.id for v in await store.search(CatalogueQuery())] == sorted(ids)
    page = await store.search(CatalogueQuery(limit=2))
    rest = await store.search(CatalogueQuery(after=keyset(page[-1])))
    assert [v.id for v in page + rest] == sorted(ids)
    newest_first = await store.history(HistoryQuery())
    assert [v.id for v in newest_first] == sorted(ids, reverse=True)
