"""BinaryService: the one place that coordinates the content store and the catalogue.

Writes go content first, catalogue second: the bytes are staged (hashed, durable, invisible),
then published under their hash, and only then is the version row committed, so an upload that
fails part-way leaves nothing visible (an unreferenced blob at worst, which ``fhirbin gc``
removes). Reads are one indexed catalogue query followed by a stream from the content store.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import anyio

from fhirbin.errors import Forbidden, Gone, NotFound, PayloadTooLarge, PreconditionFailed
from fhirbin.fhir.dates import datetime_to_us
from fhirbin.fhir.ids import new_id
from fhirbin.metadata.base import (
    AuditRecord,
    BinaryVersion,
    CatalogueQuery,
    Expunged,
    HistoryQuery,
    Keyset,
    MetadataStore,
    VersionConflict,
)
from fhirbin.security.access import Access
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
        redirect: tuple[str, Path] | None = None,
    ) -> None:
        self.blobs = blobs
        #: FHIRBIN_ACCEL_REDIRECT's prefix and the folder whose files it names (the local
        #: store's root), or None: off (docs/deployment.md, "nginx sends the files")
        self.redirect = redirect
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
        *,
        access: Access,
        audit: AuditFor | None = None,
    ) -> BinaryVersion:
        """Store new content under a server-assigned id (R4 http.html#create) as version 1."""
        access.check_write(security_context)
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
        *,
        access: Access,
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
        A Binary ``access`` may not see is a 404; one it may not write is a 403.
        """
        current = await self.catalogue.current(binary_id)
        if current is not None:
            access.hide(binary_id, current.security_context)
        access.check_write(security_context)
        self._check(binary_id, current, precondition)
        staged = await self._stage(content_type, chunks)
        created = False

        async def add(blob: BlobInfo) -> BinaryVersion:
            nonlocal current, created
            pause = _FIRST_PAUSE
            while True:
                # After an expunge, numbering goes on from the highest number the id had
                # (docs/decisions.md#expunge): an (id, version) pair never names other bytes.
                number = (
                    current.version + 1
                    if current
                    else await self.catalogue.last_expunged(binary_id) + 1
                )
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
        *,
        access: Access,
        audit: AuditFor | None = None,
    ) -> BinaryVersion | None:
        """DELETE: a deletion marker as the next version; unknown or deleted ids are a no-op.

        R4 http.html#delete: deleting something that never existed or is already deleted
        succeeds (docs/decisions.md#delete-is-idempotent), and history keeps every version.
        """
        current = await self.catalogue.current(binary_id)
        if current is not None:
            access.hide(binary_id, current.security_context)
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
            return await self.delete(binary_id, access=access, audit=audit)
        return marker

    async def expunge(
        self, binary_id: str, access: Access, audit: AuditRecord | None = None
    ) -> Expunged:
        """$expunge: every version of ``binary_id`` removed from the catalogue (with ``audit``
        in the same transaction), then each content no remaining version names removed from the
        store; NotFound when the id has no versions (docs/decisions.md#expunge). A patient-bound
        ``access`` erases only what was always its patient's, every version."""
        current = await self.catalogue.current(binary_id)
        if current is None:
            raise NotFound(f"Binary/{binary_id} is not known to this server.")
        access.hide(binary_id, current.security_context)
        if access.patient is not None:
            await self._check_every_version(access, binary_id)
        gone = await self.catalogue.expunge(binary_id, audit)
        if gone is None:
            raise NotFound(f"Binary/{binary_id} is not known to this server.")
        unused = gone.contents - await self.catalogue.referenced(gone.contents)
        for key in sorted(unused):
            await self.blobs.delete(key)
        return gone

    async def _check_every_version(self, access: Access, binary_id: str) -> None:
        query = HistoryQuery(binary_id=binary_id, limit=_CHECK_PAGE)
        while True:
            page = await self.catalogue.history(query)
            for version in page:
                if not access.may_see(version.security_context):
                    raise Forbidden(
                        f"An earlier version of Binary/{binary_id} belongs to another patient: "
                        "this token may not expunge it."
                    )
            if len(page) < _CHECK_PAGE:
                return
            last = page[-1]
            query = replace(
                query, after=Keyset(datetime_to_us(last.last_updated), last.id, last.version)
            )

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

    async def vread(self, binary_id: str, version_id: int, access: Access) -> BinaryVersion:
        """One version (R4 http.html#vread): 404 if unknown or hidden from ``access``, 410 if
        it is a deletion."""
        version = await self.catalogue.get_version(binary_id, version_id)
        if version is None:
            raise NotFound(f"Binary/{binary_id} has no version {version_id}.")
        access.hide(binary_id, version.security_context)
        if version.deleted:
            raise Gone(f"Version {version_id} of Binary/{binary_id} is a deletion.")
        return version

    async def search(
        self, query: CatalogueQuery, access: Access, *, with_total: bool
    ) -> tuple[list[BinaryVersion], int | None]:
        """A page of current versions (and the total when asked), limited to what ``access``
        may see. A search by a few ids and nothing else is answered by looking each id up
        (the path a plain read takes, remembered between writes): same rows, same order."""
        query = replace(query, security_contexts=access.contexts())
        if _by_ids_only(query):
            return await self._search_ids(query, with_total)
        rows = await self.catalogue.search(query) if query.limit > 0 else []
        total = await self.catalogue.count(query) if with_total else None
        return rows, total

    async def _search_ids(
        self, query: CatalogueQuery, with_total: bool
    ) -> tuple[list[BinaryVersion], int | None]:
        assert query.ids is not None
        contexts = query.security_contexts
        if len(query.ids) == 1:  # the read's own lookup, remembered between writes
            (only,) = query.ids
            current = await self.catalogue.current(only)
            live = [] if current is None or current.deleted else [current]
        else:  # one round trip for them all
            live = await self.catalogue.current_many(sorted(query.ids))
        found = [v for v in live if contexts is None or v.security_context in contexts]
        # The catalogue's search order: lastUpdated, then id (metadata/queries.py).
        found.sort(key=lambda v: (v.last_updated, v.id), reverse=query.descending)
        return found[: query.limit], len(found) if with_total else None

    async def history(
        self, binary_id: str | None, query: HistoryQuery, access: Access, *, with_total: bool
    ) -> tuple[list[BinaryVersion], int | None]:
        """A page of versions, newest first (R4 http.html#history), of one Binary (404 when
        unknown or hidden from ``access``) or of all, limited to what ``access`` may see."""
        if binary_id is not None:
            current = await self.catalogue.current(binary_id)
            if current is None:
                raise NotFound(f"Binary/{binary_id} is not known to this server.")
            access.hide(binary_id, current.security_context)
        query = replace(query, binary_id=binary_id, security_contexts=access.contexts())
        rows = await self.catalogue.history(query) if query.limit > 0 else []
        total = await self.catalogue.count_history(query) if with_total else None
        return rows, total

    async def read(self, binary_id: str, access: Access) -> BinaryVersion:
        """The current version; NotFound if never stored, Gone if deleted (R4 http.html#read).

        A Binary ``access`` may not see is a NotFound, checked before the deleted check, so a
        hidden deleted Binary is a 404, not a 410.
        """
        version = await self.catalogue.current(binary_id)
        if version is None:
            raise NotFound(f"Binary/{binary_id} is not known to this server.")
        access.hide(binary_id, version.security_context)
        if version.deleted:
            raise Gone(f"Binary/{binary_id} has been deleted.")
        return version

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

    def content_redirect(self, version: BinaryVersion) -> str | None:
        """The X-Accel-Redirect URI naming the content's local file for nginx (the prefix,
        then the file's path under the store's root), or None: off, or no local file."""
        if self.redirect is None:
            return None
        path = self.content_path(version)
        if path is None:
            return None
        prefix, root = self.redirect
        try:
            return prefix + path.relative_to(root).as_posix()
        except ValueError:
            return None


#: Versions read per page when a patient-bound token's right to expunge is checked.
_CHECK_PAGE = 1000
#: A search naming at most this many ids, and nothing else, looks each one up.
_FEW_IDS = 20


def _by_ids_only(query: CatalogueQuery) -> bool:
    return (
        query.ids is not None
        and len(query.ids) <= _FEW_IDS
        and not query.updated
        and query.after is None
        and query.before is None
    )


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
