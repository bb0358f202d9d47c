"""The BlobStore interface: immutable bytes by opaque key (the SHA-256 of the content).

A BlobStore knows nothing of FHIR. ``put`` writes to a temporary object while hashing, makes it
durable and only then publishes it under its hash, so a failed or aborted upload never becomes
visible; identical content is stored once.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class BlobInfo:
    """What ``put`` stored: ``key`` is the lowercase hex SHA-256 of the content."""

    key: str
    size: int


class BlobNotFound(LookupError):
    """No blob is stored under that key."""


class BlobStore(Protocol):
    async def put(self, chunks: AsyncIterable[bytes]) -> BlobInfo:
        """Store the concatenated chunks; durable and published under their hash on return.

        If iterating ``chunks`` raises, the exception propagates and nothing is published.
        """
        ...

    def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes ``start`` up to (not including) ``end`` of a blob.

        Raises BlobNotFound (on first iteration) when the key is unknown.
        """
        ...

    def path(self, key: str) -> Path | None:
        """A local file holding the blob, for zero-copy sending; None if the store has none."""
        ...

    def small_content(self, key: str, size: int) -> bytes | None:
        """The whole content of a small blob (``size`` bytes, as catalogued) from memory, read
        once on the caller's thread; None when it is too large to keep in memory or the store
        cannot say. May raise OSError (then ``open`` reports the problem)."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None:
        """Remove a blob; removing an absent one is not an error."""
        ...
