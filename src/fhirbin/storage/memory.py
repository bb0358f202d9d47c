"""MemoryBlobStore: the BlobStore contract held in a dict, for tests and as a reference.

It follows the same rules as the other stores (content-addressed, staged then published,
identical content stored once, ranges by offset) but has no local files, so its bodies and
staged blobs carry no ``path``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from pathlib import Path

import anyio.lowlevel

from fhirbin.storage.base import BlobInfo, BlobNotFound, Leftover, Staging, StoredBlob

MIB = 1 << 20


class _Body:
    path: Path | None = None

    def __init__(self, store: MemoryBlobStore, key: str, start: int, end: int | None) -> None:
        if start < 0 or (end is not None and end < 0):
            raise ValueError("range bounds must be non-negative")
        self._store, self._key, self._start, self._end = store, key, start, end

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._store._stream(
            self._store._blobs.get(self._key), self._key, self._start, self._end
        )


class _Staged:
    path: Path | None = None

    def __init__(self, store: MemoryBlobStore, data: bytes, info: BlobInfo) -> None:
        self._store, self._data, self._info = store, data, info

    @property
    def info(self) -> BlobInfo:
        return self._info

    def read(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        return self._store._stream(self._data, self._info.key, start, end)

    async def publish(self) -> bool:
        await anyio.lowlevel.checkpoint()
        key = self._info.key
        fresh = key not in self._store._blobs
        self._store._blobs.setdefault(key, self._data)
        self._store._modified[key] = time.time()
        return fresh

    async def discard(self) -> None:
        self._data = b""


class MemoryBlobStore(Staging):
    """A BlobStore in process memory; nothing survives the process."""

    def __init__(self, *, chunk_size: int = MIB) -> None:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self.chunk_size = chunk_size
        self._blobs: dict[str, bytes] = {}
        self._modified: dict[str, float] = {}

    async def stage(self, chunks: AsyncIterable[bytes]) -> _Staged:
        hasher = hashlib.sha256()
        buffer = bytearray()
        # If iterating raises, nothing below runs: a failed upload leaves nothing.
        async for chunk in chunks:
            hasher.update(chunk)
            buffer += chunk
        return _Staged(self, bytes(buffer), BlobInfo(key=hasher.hexdigest(), size=len(buffer)))

    async def _stream(
        self, data: bytes | None, key: str, start: int, end: int | None
    ) -> AsyncGenerator[bytes, None]:
        # Malformed keys are simply absent, so they need no separate check here.
        if data is None:
            raise BlobNotFound(key)
        stop = len(data) if end is None else min(end, len(data))
        view = memoryview(data)
        for offset in range(start, stop, self.chunk_size):
            # A checkpoint per piece, like a real store's I/O, so cancellation behaves the same.
            await anyio.lowlevel.checkpoint()
            yield bytes(view[offset : min(offset + self.chunk_size, stop)])

    def open(self, key: str, start: int = 0, end: int | None = None) -> _Body:
        return _Body(self, key, start, end)

    async def exists(self, key: str) -> bool:
        return key in self._blobs

    async def stat(self, key: str) -> StoredBlob | None:
        data = self._blobs.get(key)
        return None if data is None else StoredBlob(key, len(data), self._modified.get(key, 0.0))

    async def delete(self, key: str) -> None:
        self._blobs.pop(key, None)
        self._modified.pop(key, None)

    async def stored(self) -> AsyncIterator[StoredBlob]:
        for key, data in list(self._blobs.items()):
            yield StoredBlob(key, len(data), self._modified.get(key, 0.0))

    async def leftovers(self, older_than: float, *, remove: bool) -> list[Leftover]:
        return []  # staged bytes live in the staging object and go with it

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        return None
