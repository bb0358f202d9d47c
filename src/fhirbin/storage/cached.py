"""CachedBlobStore: small contents kept in memory, by SHA-256, around any BlobStore.

Content is immutable and addressed by its hash, so a cached copy can never go stale, on this
node or any other. Reads of small Binaries (thumbnails, HL7 attachments, small PDFs) then cost
no file open and no read, and on a remote store no round trip: measured on the 1 KiB read, the
open and read released and re-took the GIL twice per request under load; the FHIR JSON form of a
small Binary, streamed from the file through worker threads, cost three thread hand-offs per
request. Bounded by total bytes; least recently used goes first.

A store whose bodies carry a local file is read synchronously on a miss (one small read on the
caller's thread); any other store fills the cache as a whole small body streams past.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

from fhirbin.storage.base import BlobBody, BlobInfo, BlobStore, Leftover, StagedBlob, StoredBlob

#: Contents up to this size are kept in memory (thumbnails, HL7 attachments, small PDFs).
SMALL = 64 * 1024


class SmallContentCache:
    """Least-recently-used bytes by key, bounded per item and in total."""

    def __init__(self, max_item: int = SMALL, max_total: int = 64 * 1024 * 1024) -> None:
        self.max_item = max_item
        self.max_total = max_total
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._total = 0

    def get(self, key: str) -> bytes | None:
        data = self._items.get(key)
        if data is not None:
            self._items.move_to_end(key)
        return data

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self.max_item or key in self._items:
            return
        self._items[key] = data
        self._total += len(data)
        while self._total > self.max_total:
            _, dropped = self._items.popitem(last=False)
            self._total -= len(dropped)

    def forget(self, key: str) -> None:
        data = self._items.pop(key, None)
        if data is not None:
            self._total -= len(data)


class _Filling:
    """A whole small body that puts its bytes in the cache once it has streamed them all."""

    def __init__(self, body: BlobBody, cache: SmallContentCache, key: str, size: int) -> None:
        self._body, self._cache, self._key, self._size = body, cache, key, size

    @property
    def path(self) -> Path | None:
        return self._body.path

    async def __aiter__(self) -> AsyncIterator[bytes]:
        pieces: list[bytes] = []
        async for piece in self._body:
            pieces.append(piece)
            yield piece
        data = b"".join(pieces)
        if len(data) == self._size:
            self._cache.put(self._key, data)


class CachedBlobStore:
    """A BlobStore that answers small contents from memory (see the module docstring)."""

    def __init__(self, inner: BlobStore, cache: SmallContentCache | None = None) -> None:
        self.inner = inner
        self.cache = cache or SmallContentCache()

    def small_content(self, key: str, size: int) -> bytes | None:
        """The whole content of a small blob (``size`` bytes, as catalogued) from memory, or
        read at once from a local file; None when it is too large to keep or not at hand.
        May raise OSError (then streaming the body reports the problem)."""
        if size > self.cache.max_item:
            return None
        data = self.cache.get(key)
        if data is not None:
            return data
        path = self.inner.open(key).path
        if path is None:
            return None
        data = path.read_bytes()
        if len(data) != size:  # not what the catalogue says: let the caller stream and fail
            return None
        self.cache.put(key, data)
        return data

    def open_whole(self, key: str, size: int) -> BlobBody:
        """The whole blob; a small one fills the cache as it streams."""
        body = self.inner.open(key)
        if size > self.cache.max_item or body.path is not None:
            return body
        return _Filling(body, self.cache, key, size)

    # The BlobStore protocol, delegated.

    async def stage(self, chunks: AsyncIterable[bytes]) -> StagedBlob:
        return await self.inner.stage(chunks)

    async def put(self, chunks: AsyncIterable[bytes]) -> BlobInfo:
        return await self.inner.put(chunks)

    def open(self, key: str, start: int = 0, end: int | None = None) -> BlobBody:
        return self.inner.open(key, start, end)

    async def exists(self, key: str) -> bool:
        return await self.inner.exists(key)

    async def stat(self, key: str) -> StoredBlob | None:
        return await self.inner.stat(key)

    async def delete(self, key: str) -> None:
        self.cache.forget(key)
        await self.inner.delete(key)

    def stored(self) -> AsyncIterator[StoredBlob]:
        return self.inner.stored()

    async def leftovers(self, older_than: float, *, remove: bool) -> list[Leftover]:
        return await self.inner.leftovers(older_than, remove=remove)

    async def check(self) -> None:
        await self.inner.check()

    async def close(self) -> None:
        await self.inner.close()
