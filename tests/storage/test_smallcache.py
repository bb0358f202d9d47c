"""The in-memory cache of small native contents."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhirbin.storage.smallcache import SmallContentCache


def blob(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_small_contents_are_read_once_then_served_from_memory(tmp_path: Path) -> None:
    cache = SmallContentCache(max_item=10, max_total=100)
    path = blob(tmp_path, "a", b"hello")
    assert cache.get("a", path, 5) == b"hello"
    path.unlink()  # a second read must not touch the file
    assert cache.get("a", path, 5) == b"hello"


def test_large_contents_are_not_kept(tmp_path: Path) -> None:
    cache = SmallContentCache(max_item=4, max_total=100)
    assert cache.get("a", blob(tmp_path, "a", b"hello"), 5) is None


def test_a_file_of_the_wrong_size_is_not_kept(tmp_path: Path) -> None:
    cache = SmallContentCache(max_item=10, max_total=100)
    assert cache.get("a", blob(tmp_path, "a", b"hello"), 6) is None


def test_least_recently_used_goes_first_when_full(tmp_path: Path) -> None:
    cache = SmallContentCache(max_item=10, max_total=10)
    a, b, c = (blob(tmp_path, n, n.encode() * 4) for n in "abc")
    cache.get("a", a, 4)
    cache.get("b", b, 4)
    cache.get("a", a, 4)  # a is now the most recent
    cache.get("c", c, 4)  # 12 bytes > 10: b goes
    a.unlink()
    b.unlink()
    assert cache.get("a", a, 4) == b"aaaa"
    with pytest.raises(FileNotFoundError):  # evicted: it would have to be read again
        cache.get("b", b, 4)
