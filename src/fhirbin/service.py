"""BinaryService: the one place that coordinates the content store and the catalogue.

Writes go content first, catalogue second: the bytes are made durable under their hash, and only
then is the version row committed, so an upload that fails part-way leaves nothing visible (an
unreferenced blob at worst, which a later garbage collection can remove). Reads are one indexed
catalogue query followed by a stream from the content store.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from fhirbin.errors import Gone, NotFound, PayloadTooLarge
from fhirbin.fhir.ids import new_id
from fhirbin.metadata.base import BinaryVersion, MetadataStore, VersionConflict
from fhirbin.storage.base import BlobStore

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Binary content is larger than this server's limit of {limit} bytes "
        "(FHIRBIN_MAX_BINARY_SIZE)."
    )


async def limited(chunks: AsyncIterable[bytes], limit: int) -> AsyncIterator[bytes]:
    """Pass chunks through, raising PayloadTooLarge as soon as more than ``limit`` bytes came."""
    seen = 0
    async for chunk in chunks:
        seen += len(chunk)
        if seen > limit:
            raise too_large(limit)
        yield chunk


class BinaryService:
    def __init__(
        self,
        blobs: BlobStore,
        catalogue: MetadataStore,
        *,
        max_size: int,
        clock: Clock = utc_now,
    ) -> None:
        self.blobs = blobs
        self.catalogue = catalogue
        self.max_size = max_size
        self.clock = clock

    async def create(
        self,
        content_type: str,
        security_context: str | None,
        chunks: AsyncIterable[bytes],
    ) -> BinaryVersion:
        """Store new content under a server-assigned id (R4 http.html#create) as version 1."""
        blob = await self.blobs.put(limited(chunks, self.max_size))
        while True:
            version = BinaryVersion(
                id=new_id(),
                version=1,
                last_updated=self.clock(),
                content_type=content_type,
                security_context=security_context,
                size=blob.size,
                sha256=blob.key,
            )
            try:
                await self.catalogue.add_version(version)
            except VersionConflict:  # a random UUID collided: draw another
                continue
            return version

    async def read(self, binary_id: str) -> BinaryVersion:
        """The current version; NotFound if never stored, Gone if deleted (R4 http.html#read)."""
        version = await self.catalogue.current(binary_id)
        if version is None:
            raise NotFound(f"Binary/{binary_id} is not known to this server.")
        if version.deleted:
            raise Gone(f"Binary/{binary_id} has been deleted.")
        return version

    async def search_ids(self, id_sets: Sequence[frozenset[str]] | None) -> list[BinaryVersion]:
        """Current versions matching every OR-set of ids (R4 search.html#combining)."""
        if id_sets is None:
            return await self.catalogue.current_all()
        wanted = frozenset.intersection(*id_sets) if id_sets else frozenset()
        if not wanted:
            return []
        return await self.catalogue.current_many(sorted(wanted))

    def content(self, version: BinaryVersion) -> AsyncIterator[bytes]:
        return self.blobs.open(_key(version))

    def content_path(self, version: BinaryVersion) -> Path | None:
        return self.blobs.path(_key(version))


def _key(version: BinaryVersion) -> str:
    if version.sha256 is None:  # only deletion markers have no content, and they are never read
        raise NotFound(f"Binary/{version.id} has no content.")
    return version.sha256
