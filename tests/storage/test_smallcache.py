"""The in-memory cache of small native contents (storage/cached.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fhirbin.storage.cached import CachedBlobStore, SmallContentCache
from fhirbin.storage.filesystem import FilesystemBlobStore

pytestmark = pytest.mark.anyio


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def test_small_contents_are_kept_and_large_ones_are_not() -> None:
    cache = SmallContentCache(max_item=4, max_total=100)
    cache.put("a", b"abcd")
    cache.put("b", b"abcde")
    assert cache.get("a") == b"abcd"
    assert cache.get("b") is None


def test_least_recently_used_goes_first_when_full() -> None:
    cache = SmallContentCache(max_item=10, max_total=10)
    cache.put("a", b"aaaa")
    cache.put("b", b"bbbb")
    assert cache.get("a") == b"aaaa"  # a is now the most recent
    cache.put("c", b"cccc")  # 12 bytes > 10: b goes
    assert cache.get("a") == b"aaaa"
    assert cache.get("b") is None
    assert cache.get("c") == b"cccc"


async def test_a_local_file_is_read_once_then_served_from_memory(tmp_path: Path) -> None:
    store = CachedBlobStore(FilesystemBlobStore(tmp_path / "blobs"))
    info = await store.put(_chunks(b"hello"))
    assert store.small_content(info.key, 5) == b"hello"
    path = store.open(info.key).path
    assert path is not None
    path.chmod(0o600)
    path.unlink()  # a second read must not touch the file
    assert store.small_content(info.key, 5) == b"hello"


async def test_a_file_of_the_wrong_size_is_not_kept(tmp_path: Path) -> None:
    store = CachedBlobStore(FilesystemBlobStore(tmp_path / "blobs"))
    info = await store.put(_chunks(b"hello"))
    assert store.small_content(info.key, 6) is None
    assert store.cache.get(info.key) is None
