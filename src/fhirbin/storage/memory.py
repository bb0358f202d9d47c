"""MemoryBlobStore: the BlobStore contract held in a dict, for tests and as a reference.

It follows the same rules as the filesystem store (content-addressed, published only after the
whole body was read, identical content stored once, ranges by offset) but has no local files, so
``path`` is always None.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncGenerator, AsyncIterable
from pathlib import Path

import anyio.lowlevel

from fhirbin.storage.base import BlobInfo, BlobNotFound
from fhirbin.storage.smallcache import SMALL

MIB = 1 << 20


class MemoryBlobStore:
    """A BlobStore in process memory; nothing survives the process."""

    def __init__(self, *, chunk_size: int = MIB) -> None:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self.chunk_size = chunk_size
        self._blobs: dict[str, bytes] = {}

    async def put(self, chunks: AsyncIterable[bytes]) -> BlobInfo:
        hasher = hashlib.sha256()
        buffer = bytearray()
        # If iterating raises, nothing below runs: a failed upload never becomes visible.
        async for chunk in chunks:
            hasher.update(chunk)
            buffer += chunk
        key = hasher.hexdigest()
        self._blobs.setdefault(key, bytes(buffer))
        return BlobInfo(key=key, size=len(buffer))

    async def open(
        self, key: str, start: int = 0, end: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        if start < 0 or (end is not None and end < 0):
            raise ValueError("range bounds must be non-negative")
        # Malformed keys are simply absent, so they need no separate check here.
        data = self._blobs.get(key)
        if data is None:
            raise BlobNotFound(key)
        stop = len(data) if end is None else min(end, len(data))
        view = memoryview(data)
        for offset in range(start, stop, self.chunk_size):
            # A checkpoint per piece, like a real store's I/O, so cancellation behaves the same.
            await anyio.lowlevel.checkpoint()
            yield bytes(view[offset : min(offset + self.chunk_size, stop)])

    def small_content(self, key: str, size: int) -> bytes | None:
        data = self._blobs.get(key)
        return data if data is not None and len(data) == size <= SMALL else None

    def path(self, key: str) -> Path | None:
        return None

    async def exists(self, key: str) -> bool:
        return key in self._blobs

    async def delete(self, key: str) -> None:
        self._blobs.pop(key, None)
