"""Signing keys shared by every node, and the contents the catalogue refers to (gc, verify).

Part of the MetadataStore contract: runs on every database of ``support.DATABASES``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest

from fhirbin.metadata.base import ContentRef, KeyExists, SigningKeyRecord
from fhirbin.metadata.sql import SqlMetadataStore
from tests.metadata.support import WHEN, Database, marker, version

pytestmark = pytest.mark.anyio


def key(kid: str, seconds: int = 0) -> SigningKeyRecord:
    return SigningKeyRecord(kid, f"-----PEM {kid}-----", WHEN + timedelta(seconds=seconds))


async def test_signing_keys_are_listed_newest_first(store: SqlMetadataStore) -> None:
    assert await store.signing_keys() == []
    await store.add_signing_key(key("old", 0))
    await store.add_signing_key(key("new", 60))
    await store.add_signing_key(key("middle", 30))
    assert [k.kid for k in await store.signing_keys()] == ["new", "middle", "old"]
    assert (await store.signing_keys())[0] == key("new", 60)


async def test_a_duplicate_kid_raises_and_keeps_the_original(store: SqlMetadataStore) -> None:
    await store.add_signing_key(key("k"))
    with pytest.raises(KeyExists):
        await store.add_signing_key(SigningKeyRecord("k", "impostor", WHEN))
    assert await store.signing_keys() == [key("k")]


async def test_ensure_signing_key_makes_one_only_when_there_is_none(
    store: SqlMetadataStore,
) -> None:
    made: list[str] = []

    def make() -> SigningKeyRecord:
        made.append("k1")
        return key("k1")

    assert await store.ensure_signing_key(make) == key("k1")
    assert await store.ensure_signing_key(make) == key("k1")
    assert made == ["k1"]
    await store.add_signing_key(key("k2", 10))
    assert await store.ensure_signing_key(make) == key("k2", 10)  # the newest
    assert made == ["k1"]


def maker(kid: str) -> Callable[[], SigningKeyRecord]:
    return lambda: key(kid)


async def test_nodes_starting_together_end_up_with_exactly_one_key(database: Database) -> None:
    nodes = [await database.open()] + [await database.open(migrate=False) for _ in range(5)]
    try:
        found = await asyncio.gather(
            *(node.ensure_signing_key(maker(f"node-{n}")) for n, node in enumerate(nodes))
        )
        assert len({k.kid for k in found}) == 1
        assert await nodes[0].signing_keys() == [found[0]]
    finally:
        for node in nodes:
            await node.close()


A, B, C = "aa" * 32, "bb" * 32, "cc" * 32


async def test_referenced_names_the_hashes_some_version_refers_to(store: SqlMetadataStore) -> None:
    await store.add_version(version("x", 1, sha256=A))
    await store.add_version(version("x", 2, sha256=B))  # A stays referenced by history
    await store.add_version(marker("x", 3))
    assert await store.referenced([A, B, C]) == {A, B}
    assert await store.referenced([]) == set()
    many = [f"{n:064x}" for n in range(1200)] + [B]  # more than one query takes
    assert await store.referenced(many) == {B}


async def test_contents_page_through_distinct_hashes_in_order(store: SqlMetadataStore) -> None:
    await store.add_version(version("y", 1, sha256=B, size=20))
    await store.add_version(version("x", 1, sha256=B, size=20))
    await store.add_version(version("x", 2, sha256=A, size=10))
    await store.add_version(version("z", 1, sha256=C, size=30))
    await store.add_version(marker("z", 2))
    everything = [
        ContentRef(A, 10, ("x",)),
        ContentRef(B, 20, ("x", "y")),
        ContentRef(C, 30, ("z",)),
    ]
    assert await store.contents(None, 10) == everything
    assert await store.contents(None, 2) == everything[:2]
    assert await store.contents(A, 1) == [everything[1]]
    assert await store.contents(B, 5) == [everything[2]]
    assert await store.contents(C, 5) == []
    assert await store.contents(None, 0) == []
