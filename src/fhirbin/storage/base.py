"""The BlobStore interface: immutable bytes by opaque key (the SHA-256 of the content).

A BlobStore knows nothing of FHIR. It is shaped for remote stores (an S3 bucket) as much as for a
local folder, so nothing in it assumes a local file:

- Uploads are *staged*: ``stage`` streams the chunks into a temporary object while hashing and
  makes them durable, but invisible; whoever staged the bytes may read them back (random access
  included, for formats such as PDF whose structure is at the end), then ``publish`` them under
  their hash or ``discard`` them. Identical content is stored once: publishing bytes that are
  already stored keeps the stored copy, refreshes its age (so ``fhirbin gc`` does not take it
  from under a version about to be committed) and reports ``fresh=False``.
- ``open`` returns a *body*: the bytes of a range, streamed. A body MAY carry ``path``, a local
  file holding the whole blob, so that a server can hand the file to the kernel instead of
  copying it through Python; a remote store's bodies have none.
- ``stored`` and ``leftovers`` list what is there, for ``fhirbin gc`` and ``fhirbin verify``.

Caches (small contents in memory) wrap a store (``storage/cached.py``); they are not branches
inside one. Every store passes the contract suite in ``tests/storage/test_blob_contract.py``.
Failures of the store itself are ``faults.DependencyUnavailable`` or ``faults.OutOfSpace``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class BlobInfo:
    """What was stored: ``key`` is the lowercase hex SHA-256 of the content."""

    key: str
    size: int


@dataclass(frozen=True)
class StoredBlob:
    """One published blob, as listed by ``BlobStore.stored``: ``modified`` in seconds since
    the epoch (refreshed when identical content is published again)."""

    key: str
    size: int
    modified: float


@dataclass(frozen=True)
class Leftover:
    """Something an interrupted upload left behind (a temp file, an unfinished multipart
    upload): ``name`` says what it is to an operator; ``size`` may be 0 where unknown."""

    name: str
    size: int
    modified: float


class BlobNotFound(LookupError):
    """No blob is stored under that key."""


class BlobBody(Protocol):
    """A range of one blob, streamed; iterating raises BlobNotFound for an unknown key."""

    @property
    def path(self) -> Path | None:
        """A local file holding the whole blob (for zero-copy sending), or None."""
        ...

    def __aiter__(self) -> AsyncIterator[bytes]: ...


class StagedBlob(Protocol):
    """Hashed, durable and invisible bytes of one upload (see the module docstring)."""

    @property
    def info(self) -> BlobInfo: ...

    @property
    def path(self) -> Path | None:
        """A local file holding the staged bytes, for random access without a copy; or None."""
        ...

    def read(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The staged bytes ``start`` up to (not including) ``end``."""
        ...

    async def publish(self) -> bool:
        """Make the bytes visible under ``info.key``; False if they already were (then the
        stored copy stays and its age is refreshed). May be called again after a False."""
        ...

    async def discard(self) -> None:
        """Remove what staging left; safe to call after ``publish`` and more than once."""
        ...


class BlobStore(Protocol):
    async def stage(self, chunks: AsyncIterable[bytes]) -> StagedBlob:
        """Stream ``chunks`` into a staged blob. If iterating ``chunks`` raises, the exception
        propagates and nothing is left behind."""
        ...

    async def put(self, chunks: AsyncIterable[bytes]) -> BlobInfo:
        """Stage and publish in one step (``Staging.put``)."""
        ...

    def open(self, key: str, start: int = 0, end: int | None = None) -> BlobBody:
        """The bytes ``start`` up to (not including) ``end`` of a blob. Cheap: no I/O happens
        before the body is iterated (a local store may look up ``path`` at once)."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def stat(self, key: str) -> StoredBlob | None:
        """Size and age of a published blob; None when there is none."""
        ...

    async def delete(self, key: str) -> None:
        """Remove a blob; removing an absent one is not an error."""
        ...

    def stored(self) -> AsyncIterator[StoredBlob]:
        """Every published blob, in no particular order."""
        ...

    async def leftovers(self, older_than: float, *, remove: bool) -> list[Leftover]:
        """What interrupted uploads left, untouched for ``older_than`` seconds; removed too
        when ``remove``. Younger leftovers may be uploads in progress and are kept."""
        ...

    async def check(self) -> None:
        """Raise ``faults.DependencyUnavailable`` unless the store can be used now."""
        ...

    async def close(self) -> None: ...


class Staging(ABC):
    """What every store shares: ``put`` is ``stage`` then ``publish`` (or ``discard``)."""

    @abstractmethod
    async def stage(self, chunks: AsyncIterable[bytes]) -> StagedBlob: ...

    async def put(self, chunks: AsyncIterable[bytes]) -> BlobInfo:
        staged = await self.stage(chunks)
        try:
            await staged.publish()
        finally:
            await staged.discard()
        return staged.info
