"""BinaryService: the one place that coordinates the content store and the catalogue.

Writes go content first, catalogue second: the bytes are staged (hashed, durable, invisible),
then published under their hash, and only then is the version row committed, so an upload that
fails part-way leaves nothing visible (an unreferenced blob at worst, which ``fhirbin gc``
removes). Reads are one indexed catalogue query followed by a stream from the content store.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import anyio

from fhirbin.errors import Gone, NotFound, PayloadTooLarge, PreconditionFailed
from fhirbin.fhir.ids import new_id
from fhirbin.metadata.base import (
    AuditRecord,
    BinaryVersion,
    CatalogueQuery,
    HistoryQuery,
    MetadataStore,
    VersionConflict,
)
from fhirbin.security.sniff import Sniffed, SniffRecord
from fhirbin.storage.base import BlobInfo, StagedBlob
from fhirbin.storage.cached import CachedBlobStore

#: Whether an If-Match header (already parsed by the caller) accepts the current version
#: (None: the resource does not exist or is deleted).
Precondition = Callable[[int | None], bool]

#: Unconditional writers that lose a race for a version number try again after a random pause
#: of up to this many seconds, doubling each time up to ``_MAX_PAUSE``; they never give up with a
#: 412 (only If-Match can fail a write), so only the request's own time limits bound them.
_FIRST_PAUSE = 0.002
_MAX_PAUSE = 0.2

#: Raises for a Binary (id, security context) the caller may not see (api/access.py).
Visibility = Callable[[str, str | None], None]

#: Builds the audit record of a write once its version is known; stored in the same
#: transaction as the version (issue: audit "in the same transaction as writes").
AuditFor = Callable[[BinaryVersion], AuditRecord]


#: Content screening on the way into storage (scanning/screener.py): called with the declared
#: type, the upload's chunks and a record to note what it sniffed in, it passes the chunks on
#: while it looks at them (sniffing the first bytes, feeding a virus scanner) and raises a
#: FhirbinError to refuse the upload. Because the blob store publishes nothing when its chunk
#: iterator raises, a refusal leaves nothing behind.
Screener = Callable[[str, AsyncIterable[bytes], SniffRecord], AsyncIterator[bytes]]

#: Deep inspection of the staged bytes (inspection/): called with the declared type, what the
#: screener sniffed (None when it did not sniff) and the staged blob, after staging and before
#: publishing; it raises a FhirbinError (422) to refuse, and the staged bytes are discarded.
Inspector = Callable[[str, Sniffed | None, StagedBlob], Awaitable[None]]


async def _unscreened(
    declared_type: str, chunks: AsyncIterable[bytes], record: SniffRecord
) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield chunk


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
        blobs: CachedBlobStore,
        catalogue: MetadataStore,
        *,
        max_size: int,
        clock: Clock = utc_now,
        screener: Screener | None = None,
        inspector: Inspector | None = None,
    ) -> None:
        self.blobs = blobs
        self.catalogue = catalogue
        self.max_size = max_size
        self.clock = clock
        self.screener: Screener = screener or _unscreened
        self.inspector = inspector

    async def _stage(self, content_type: str, chunks: AsyncIterable[bytes]) -> StagedBlob:
        """Size limit, then screening, then the blob store: staged (durable, invisible); then
        the inspection of the staged bytes, which discards them when it refuses."""
        record = SniffRecord()
        screened = self.screener(content_type, limited(chunks, self.max_size), record)
        staged = await self.blobs.stage(screened)
        if self.inspector is not None:
            try:
                await self.inspector(content_type, record.found, staged)
            except BaseException:
                await staged.discard()
                raise
        return staged

    async def _commit(
        self, staged: StagedBlob, add: Callable[[BlobInfo], Awaitable[BinaryVersion]]
    ) -> BinaryVersion:
        """Publish the staged bytes, then commit the version ``add`` makes of them.

        When identical content was already stored, publishing refreshed its age so that
        ``fhirbin gc`` leaves it alone; should a collection have removed it all the same between
        its check and its delete, the bytes are published again from the staged copy once the
        version is committed, so a committed version never names missing content.
        """
        try:
            fresh = await staged.publish()
            version = await add(staged.info)
            if not fresh and not await self.blobs.exists(staged.info.key):
                await staged.publish()
            return version
        finally:
            await staged.discard()

    async def create(
        self,
        content_type: str,
        security_context: str | None,
        chunks: AsyncIterable[bytes],
        audit: AuditFor | None = None,
    ) -> BinaryVersion:
        """Store new content under a server-assigned id (R4 http.html#create) as version 1."""
        staged = await self._stage(content_type, chunks)

        async def add(blob: BlobInfo) -> BinaryVersion:
            while True:
                version = self._version(new_id(), 1, content_type, security_context, blob)
                try:
                    await self.catalogue.add_version(version, audit(version) if audit else None)
                except VersionConflict:  # a random UUID collided: draw another
                    continue
                return version

        return await self._commit(staged, add)

    async def update(
        self,
        binary_id: str,
        content_type: str,
        security_context: str | None,
        chunks: AsyncIterable[bytes],
        precondition: Precondition | None = None,
        audit: AuditFor | None = None,
    ) -> tuple[BinaryVersion, bool]:
        """PUT: a new version of ``binary_id``, or version 1 (update-as-create,
        docs/decisions.md#ids).

        Returns the version and whether it created the resource (new, or brought back after a
        delete: R4 http.html#update answers 201 for both). With a precondition (If-Match), a
        stale version is a 412 before the body is read, and a writer that loses the race for
        the next version number to another node also gets 412: the (id, version) unique key
        decides, not a lock in this process (R4 http.html#concurrency). Without one, a writer
        that loses the race takes the next number, after a short random pause, until it lands.
        """
        current = await self.catalogue.current(binary_id)
        self._check(binary_id, current, precondition)
        staged = await self._stage(content_type, chunks)
        created = False

        async def add(blob: BlobInfo) -> BinaryVersion:
            nonlocal current, created
            pause = _FIRST_PAUSE
            while True:
                number = current.version + 1 if current else 1
                version = self._version(binary_id, number, content_type, security_context, blob)
                try:
                    await self.catalogue.add_version(version, audit(version) if audit else None)
                except VersionConflict:
                    if precondition is not None:
                        raise _lost_race(binary_id) from None
                    await _backoff(pause)
                    pause = min(pause * 2, _MAX_PAUSE)
                    current = await self.catalogue.current(binary_id)
                    continue
                created = current is None or current.deleted
                return version

        version = await self._commit(staged, add)
        return version, created

    async def delete(
        self,
        binary_id: str,
        precondition: Precondition | None = None,
        audit: AuditFor | None = None,
    ) -> BinaryVersion | None:
        """DELETE: a deletion marker as the next version; unknown or deleted ids are a no-op.

        R4 http.html#delete: deleting something that never existed or is already deleted
        succeeds (docs/decisions.md#delete-is-idempotent), and history keeps every version.
        """
        current = await self.catalogue.current(binary_id)
        self._check(binary_id, current, precondition)
        if current is None or current.deleted:
            return None
        marker = BinaryVersion(
            id=binary_id,
            version=current.version + 1,
            last_updated=self.clock(),
            content_type=current.content_type,
            security_context=current.security_context,
            size=0,
            sha256=None,
            deleted=True,
        )
        try:
            await self.catalogue.add_version(marker, audit(marker) if audit else None)
        except VersionConflict:
            if precondition is not None:
                raise _lost_race(binary_id) from None
            # someone updated meanwhile: delete their version
            await _backoff(_FIRST_PAUSE)
            return await self.delete(binary_id, audit=audit)
        return marker

    def _version(
        self,
        binary_id: str,
        number: int,
        content_type: str,
        security_context: str | None,
        blob: BlobInfo,
    ) -> BinaryVersion:
        return BinaryVersion(
            id=binary_id,
            version=number,
            last_updated=self.clock(),
            content_type=content_type,
            security_context=security_context,
            size=blob.size,
            sha256=blob.key,
        )

    @staticmethod
    def _check(
        binary_id: str, current: BinaryVersion | None, precondition: Precondition | None
    ) -> None:
        if precondition is None:
            return
        live = None if current is None or current.deleted else current.version
        if not precondition(live):
            raise PreconditionFailed(
                f"If-Match does not name the current version of Binary/{binary_id}"
                + (f" (it is {live})." if live is not None else " (it does not exist)."),
                expression="http.If-Match",
            )

    async def vread(
        self, binary_id: str, version_id: int, visible: Visibility | None = None
    ) -> BinaryVersion:
        """One version (R4 http.html#vread): 404 if unknown, 410 if it is a deletion."""
        version = await self.catalogue.get_version(binary_id, version_id)
        if version is None:
            raise NotFound(f"Binary/{binary_id} has no version {version_id}.")
        if visible is not None:
            visible(binary_id, version.security_context)
        if version.deleted:
            raise Gone(f"Version {version_id} of Binary/{binary_id} is a deletion.")
        return version

    async def search(
        self, query: CatalogueQuery, *, with_total: bool
    ) -> tuple[list[BinaryVersion], int | None]:
        rows = await self.catalogue.search(query) if query.limit > 0 else []
        total = await self.catalogue.count(query) if with_total else None
        return rows, total

    async def history(
        self, query: HistoryQuery, *, with_total: bool
    ) -> tuple[list[BinaryVersion], int | None]:
        rows = await self.catalogue.history(query) if query.limit > 0 else []
        total = await self.catalogue.count_history(query) if with_total else None
        return rows, total

    async def read(self, binary_id: str, visible: Visibility | None = None) -> BinaryVersion:
        """The current version; NotFound if never stored, Gone if deleted (R4 http.html#read).

        ``visible`` raises (a NotFound) for a Binary the caller may not know about; it runs
        before the deleted check, so a hidden deleted Binary is a 404, not a 410.
        """
        version = await self.catalogue.current(binary_id)
        if version is None:
            raise NotFound(f"Binary/{binary_id} is not known to this server.")
        if visible is not None:
            visible(binary_id, version.security_context)
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

    def content(
        self, version: BinaryVersion, start: int = 0, end: int | None = None
    ) -> AsyncIterable[bytes]:
        small = self.small_content(version)
        if small is not None:  # from memory: no file, no worker thread, no round trip
            return _once(small[start:end])
        if start == 0 and end is None:
            return self.blobs.open_whole(_key(version), version.size)
        return self.blobs.open(_key(version), start, end)

    def small_content(self, version: BinaryVersion) -> bytes | None:
        """The whole content of a small Binary from memory, or None (storage/smallcache.py)."""
        if version.sha256 is None:
            return None
        try:
            return self.blobs.small_content(version.sha256, version.size)
        except OSError:
            return None  # streaming it reports the problem

    def content_path(self, version: BinaryVersion) -> Path | None:
        """A local file holding the content, when the store has one (zero-copy sending)."""
        return self.blobs.open(_key(version)).path


def _lost_race(binary_id: str) -> PreconditionFailed:
    return PreconditionFailed(
        f"Another request changed Binary/{binary_id} at the same time; read it and try again.",
        expression="http.If-Match",
    )


async def _backoff(pause: float) -> None:
    # Random, so that writers who collided once do not collide again in lockstep.
    await anyio.sleep(random.uniform(0, pause))  # noqa: S311 - jitter, not a secret


async def _once(data: bytes) -> AsyncIterator[bytes]:
    if data:
        yield data


def _key(version: BinaryVersion) -> str:
    if version.sha256 is None:  # only deletion markers have no content, and they are never read
        raise NotFound(f"Binary/{version.id} has no content.")
    return version.sha256
