"""Operator work on a whole deployment: garbage collection, verification, moving content.

``collect`` (``fhirbin gc``) removes content no version references and what interrupted uploads
left behind, but only what is older than a grace period, so uploads in flight are safe. An upload
of content that is already stored refreshes the stored copy's age when it publishes
(storage/base.py), and the collector checks the age again right before each delete, after
checking the catalogue; should it still remove such content between its check and its delete, the
upload publishes its staged copy again once its version is committed (service.py). So a committed
version never names missing content.

``verify`` (``fhirbin verify``) re-hashes every piece of content the catalogue references.

``copy_content`` moves the content of one store into another, checking each hash on arrival; with
``metadata.transfer.copy_catalogue`` it moves an embedded deployment into PostgreSQL and S3
(``fhirbin copy-deployment``, docs/deployment.md).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fhirbin.metadata.base import MetadataStore
from fhirbin.storage.base import BlobNotFound, BlobStore, Leftover, StoredBlob

#: Blobs checked against the catalogue per query.
_BATCH = 500
#: Default grace period of ``fhirbin gc``: uploads and commits in flight are far younger.
GRACE_SECONDS = 3600


@dataclass
class Collected:
    """What ``collect`` removed (or, on a dry run, would remove)."""

    blobs: list[StoredBlob] = field(default_factory=list)
    leftovers: list[Leftover] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.blobs) + len(self.leftovers)

    @property
    def bytes(self) -> int:
        return sum(b.size for b in self.blobs) + sum(left.size for left in self.leftovers)


async def collect(
    blobs: BlobStore,
    catalogue: MetadataStore,
    *,
    older_than: float = GRACE_SECONDS,
    dry_run: bool = False,
    clock: Callable[[], float] = time.time,
) -> Collected:
    """Remove unreferenced content and upload leftovers older than ``older_than`` seconds."""
    done = Collected()
    cutoff = clock() - older_than
    batch: list[StoredBlob] = []
    async for blob in blobs.stored():
        if blob.modified < cutoff:
            batch.append(blob)
        if len(batch) >= _BATCH:
            await _collect_batch(blobs, catalogue, batch, cutoff, dry_run, done)
            batch = []
    if batch:
        await _collect_batch(blobs, catalogue, batch, cutoff, dry_run, done)
    done.leftovers = await blobs.leftovers(older_than, remove=not dry_run)
    return done


async def _collect_batch(
    blobs: BlobStore,
    catalogue: MetadataStore,
    batch: list[StoredBlob],
    cutoff: float,
    dry_run: bool,
    done: Collected,
) -> None:
    referenced = await catalogue.referenced([b.key for b in batch])
    for blob in batch:
        if blob.key in referenced:
            continue
        if not dry_run:
            # Refreshed since it was listed: an upload of the same bytes is about to use it.
            if not await _still_old(blobs, blob.key, cutoff):
                continue
            await blobs.delete(blob.key)
        done.blobs.append(blob)


async def _still_old(blobs: BlobStore, key: str, cutoff: float) -> bool:
    found = await blobs.stat(key)
    return found is not None and found.modified < cutoff


@dataclass(frozen=True)
class Problem:
    """Content the catalogue references that is missing or not what its hash says."""

    sha256: str
    binary_ids: tuple[str, ...]
    kind: str  # "missing" or "corrupt"
    detail: str = ""


async def verify(
    blobs: BlobStore,
    catalogue: MetadataStore,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, list[Problem]]:
    """Re-hash every referenced content; returns how many were checked and the problems."""
    checked = 0
    problems: list[Problem] = []
    after: str | None = None
    while True:
        page = await catalogue.contents(after, _BATCH)
        if not page:
            return checked, problems
        for ref in page:
            hasher = hashlib.sha256()
            size = 0
            try:
                async for chunk in blobs.open(ref.sha256):
                    hasher.update(chunk)
                    size += len(chunk)
            except BlobNotFound:
                problems.append(Problem(ref.sha256, ref.binary_ids, "missing"))
            else:
                if hasher.hexdigest() != ref.sha256 or size != ref.size:
                    detail = f"{size} bytes hashing to {hasher.hexdigest()}"
                    problems.append(Problem(ref.sha256, ref.binary_ids, "corrupt", detail))
            checked += 1
            if progress is not None:
                progress(checked, size)
        after = page[-1].sha256


async def copy_content(
    source: BlobStore,
    target: BlobStore,
    catalogue: MetadataStore,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int]:
    """Copy every content the catalogue references from ``source`` into ``target``, skipping
    what ``target`` has; each copy is hashed on arrival and must match. Returns (copied,
    skipped). Raises ValueError naming the content if a hash does not match."""
    copied = skipped = 0
    after: str | None = None
    while True:
        page = await catalogue.contents(after, _BATCH)
        if not page:
            return copied, skipped
        for ref in page:
            if await target.exists(ref.sha256):
                skipped += 1
            else:
                info = await target.put(aiter(source.open(ref.sha256)))
                if info.key != ref.sha256 or info.size != ref.size:
                    await target.delete(info.key)
                    raise ValueError(
                        f"content {ref.sha256} of Binary {', '.join(ref.binary_ids)} arrived as "
                        f"{info.size} bytes hashing to {info.key}: the source is corrupt"
                    )
                copied += 1
            if progress is not None:
                progress(copied + skipped, ref.size)
        after = page[-1].sha256
