"""S3BlobStore: the BlobStore contract on an S3 bucket (AWS S3, SeaweedFS, MinIO...).

This module owns the layout of fhirbin's objects under ``s3://bucket/prefix/``:

    prefix/tmp/<random>            staged uploads (a multipart upload, or one PUT if small)
    prefix/blobs/ab/cd/<sha256>    published blobs, content-addressed, never rewritten

``publish`` is a server-side copy of the staged object to its hash's name, then the staged
object is deleted; identical content lands on the same name, so two nodes publishing the same
bytes at once leave one object. Why a copy and not a pointer object, and why aiobotocore: see
docs/development.md, "S3: client and layout". Failures are translated by ``s3faults``; the
part bookkeeping of uploads lives in ``s3upload``.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
)
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import ClientError

from fhirbin.storage.base import BlobInfo, BlobNotFound, Leftover, Staging, StoredBlob
from fhirbin.storage.s3faults import S3Faults, error_code
from fhirbin.storage.s3upload import MultipartUpload

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import HeadObjectOutputTypeDef

MIB = 1 << 20
PART_SIZE = 8 * MIB  # S3's minimum is 5 MiB for every part but the last
#: Parts on the wire while the next one is received and hashed. Measured on a 256 MiB put
#: against SeaweedFS (docs/development.md, "S3: client and layout"): one in flight kept the
#: store's memory at +25-28 MiB at 53-55 MiB/s, two at +36-41 MiB at 49 MiB/s.
PARTS_IN_FLIGHT = 1
COPY_PART = 64 * MIB  # larger blobs are copied in ranges: each request ends in seconds
COPIES_IN_FLIGHT = 4
CLEANUP_WITHIN = 10.0
_HASH_INLINE_BELOW = 256 * 1024
_KEY = re.compile(r"[0-9a-f]{64}")
_MISSING = {"NoSuchKey", "404", "NotFound"}


@dataclass(frozen=True)
class S3Location:
    """Where and as whom: plain values, read from the environment by ``from_url`` only."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None  # None: AWS itself
    region: str = "us-east-1"
    access_key_id: str | None = None  # None: the rest of the AWS chain (files, instance role)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    profile: str | None = None
    path_style: bool | None = None  # None: path-style for an endpoint_url, virtual-hosted on AWS


class S3BlobStore(Staging):
    """A BlobStore on one bucket and prefix. The client is made on first use; ``close`` it."""

    def __init__(
        self,
        location: S3Location,
        *,
        part_size: int = PART_SIZE,
        parts_in_flight: int = PARTS_IN_FLIGHT,
        chunk_size: int = MIB,
        connect_timeout: float = 2.0,
        read_timeout: float = 4.0,
        max_attempts: int = 2,
    ) -> None:
        if part_size < 5 * MIB or parts_in_flight < 1 or chunk_size <= 0:
            raise ValueError("part_size >= 5 MiB, parts_in_flight >= 1, chunk_size > 0")
        self.location = location
        self.bucket = location.bucket
        self.part_size, self.parts_in_flight, self.chunk_size = (
            part_size,
            parts_in_flight,
            chunk_size,
        )
        prefix = location.prefix.strip("/")
        self._base = f"{prefix}/" if prefix else ""
        path_style = location.path_style
        if path_style is None:
            path_style = location.endpoint_url is not None
        # Timeouts and one retry keep a dead endpoint's answer under ~10 s (faults.py). Checksum
        # trailers only when required: we hash the content ourselves, and some S3-compatible
        # servers reject the aws-chunked trailers newer botocore sends by default.
        self._config = AioConfig(
            region_name=location.region,
            signature_version="s3v4",
            s3={"addressing_style": "path" if path_style else "virtual"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            max_pool_connections=32,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self.faults = S3Faults(location.bucket, location.endpoint_url or "AWS S3")
        self._s3: S3Client | None = None
        self._exit = AsyncExitStack()
        self._lock = asyncio.Lock()

    @classmethod
    def from_url(
        cls, url: str, *, endpoint_url: str | None = None, env: Mapping[str, str]
    ) -> S3BlobStore:
        """``s3://bucket/optional/prefix`` with the standard AWS variables from ``env``."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError("FHIRBIN_STORAGE_URL must look like s3://bucket/optional/prefix")
        return cls(
            S3Location(
                bucket=parts.netloc,
                prefix=parts.path.strip("/"),
                endpoint_url=endpoint_url
                or env.get("AWS_ENDPOINT_URL_S3")
                or env.get("AWS_ENDPOINT_URL"),
                region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
                access_key_id=env.get("AWS_ACCESS_KEY_ID"),
                secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
                session_token=env.get("AWS_SESSION_TOKEN"),
                profile=env.get("AWS_PROFILE"),
            )
        )

    async def _client(self) -> S3Client:
        if self._s3 is None:
            async with self._lock:
                if self._s3 is None:
                    loc = self.location
                    session = AioSession(profile=loc.profile)
                    self._s3 = await self._exit.enter_async_context(
                        session.create_client(
                            "s3",
                            endpoint_url=loc.endpoint_url,
                            aws_access_key_id=loc.access_key_id,
                            aws_secret_access_key=loc.secret_access_key,
                            aws_session_token=loc.session_token,
                            config=self._config,
                        )
                    )
        return self._s3

    def _blob_name(self, key: str) -> str:
        return f"{self._base}blobs/{key[:2]}/{key[2:4]}/{key}"

    async def _shielded(self, *steps: Callable[[], Awaitable[object]]) -> None:
        # Cleanup must run even when the upload was cancelled, and must not hang forever on a
        # dead store: what it cannot remove, ``leftovers`` finds later.
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_WITHIN):
            for step in steps:
                with suppress(Exception):
                    await step()

    async def stage(self, chunks: AsyncIterable[bytes]) -> S3StagedBlob:
        s3 = await self._client()
        name = f"{self._base}tmp/{uuid.uuid4().hex}"
        hasher, size = _PartHasher(), 0
        # The chunks as received, joined once per part: a growing bytearray reallocates (a
        # transient second copy) and then needs one more copy to become immutable bytes.
        pieces: list[bytes] = []
        buffered = 0
        upload: MultipartUpload | None = None
        try:
            async for chunk in chunks:
                size += len(chunk)
                pieces.append(chunk)
                buffered += len(chunk)
                if buffered >= self.part_size:
                    if upload is None:
                        upload = await MultipartUpload.create(
                            s3, self.faults, self.bucket, name, self.parts_in_flight
                        )
                    part = b"".join(pieces)
                    pieces, buffered = [], 0
                    await hasher.update(part)
                    await upload.send(part)
                    del part
            last = b"".join(pieces)
            pieces = []
            await hasher.update(last)
            if upload is None:  # smaller than one part: a single PUT
                with self.faults("storing an upload"):
                    await s3.put_object(Bucket=self.bucket, Key=name, Body=last)
            else:
                if last:
                    await upload.send(last)
                await upload.complete()
            key = await hasher.hexdigest()
        except BaseException:
            await hasher.cancel()
            aborting = [upload.abort] if upload is not None else []
            await self._shielded(*aborting, lambda: s3.delete_object(Bucket=self.bucket, Key=name))
            raise
        return S3StagedBlob(self, name, BlobInfo(key=key, size=size))

    async def _copy(self, source: str, target: str, size: int) -> None:
        """Server-side copy; also refreshes the age when ``source == target``."""
        s3 = await self._client()
        if size <= COPY_PART:
            with self.faults("publishing a blob"):
                # REPLACE: S3 refuses a copy onto itself that changes nothing.
                await s3.copy_object(
                    Bucket=self.bucket,
                    Key=target,
                    CopySource={"Bucket": self.bucket, "Key": source},
                    MetadataDirective="REPLACE",
                    Metadata={"published": str(int(time.time()))},
                )
            return
        upload = await MultipartUpload.create(s3, self.faults, self.bucket, target, 1)
        # Ranges are copied a few at once: on a server that copies the data (SeaweedFS) the
        # copy is I/O bound and gains from parallel requests, as uploads do.
        slots = asyncio.Semaphore(COPIES_IN_FLIGHT)

        async def copy_range(number: int, start: int) -> None:
            end = min(start + COPY_PART, size) - 1
            async with slots:
                with self.faults("publishing a blob"):
                    copied = await s3.upload_part_copy(
                        Bucket=self.bucket,
                        Key=target,
                        UploadId=upload.upload_id,
                        PartNumber=number,
                        CopySource={"Bucket": self.bucket, "Key": source},
                        CopySourceRange=f"bytes={start}-{end}",
                    )
            upload.copied(number, copied["CopyPartResult"]["ETag"])

        try:
            await asyncio.gather(
                *(copy_range(n, start) for n, start in enumerate(range(0, size, COPY_PART), 1))
            )
            await upload.complete()
        except BaseException:
            await self._shielded(upload.abort)
            raise

    async def _publish(self, name: str, info: BlobInfo) -> bool:
        target = self._blob_name(info.key)
        fresh = not await self.exists(info.key)
        # Stored already: copying it onto itself renews its Last-Modified, which is the age
        # ``fhirbin gc`` reads, so the grace period starts again for the version about to
        # reference it. Otherwise the staged object becomes the blob. A race between two
        # nodes copies identical bytes to one name twice: still one object. The staged
        # object stays until ``discard`` (``put`` discards at once), so publishing again
        # after a False still works if gc removed the blob in between.
        await self._copy(target if not fresh else name, target, info.size)
        return fresh

    async def _read(
        self, name: str | None, start: int, end: int | None, key: str
    ) -> AsyncGenerator[bytes, None]:
        if start < 0 or (end is not None and end < 0):
            raise ValueError("range bounds must be non-negative")
        if name is None:
            raise BlobNotFound(key)
        s3 = await self._client()
        if end is not None and end <= start:
            # Nothing to send, but an unknown key must still read as unknown.
            if await self._head(name) is None:
                raise BlobNotFound(key)
            return
        with self.faults("reading a blob"):
            try:
                # Always ranged: "bytes=0-" of an empty object is InvalidRange: empty.
                got = await s3.get_object(Bucket=self.bucket, Key=name, Range=_range(start, end))
            except ClientError as exc:
                if error_code(exc) in _MISSING:
                    raise BlobNotFound(key) from None
                if error_code(exc) == "InvalidRange":  # start at or past the end
                    return
                raise
            async with got["Body"] as body:  # releases the connection if the reader stops
                # Pieces of exactly chunk_size: the network's piece sizes are not a contract.
                pending = bytearray()
                async for piece in body.iter_chunks(self.chunk_size):
                    pending += piece
                    while len(pending) >= self.chunk_size:
                        yield bytes(pending[: self.chunk_size])
                        del pending[: self.chunk_size]
                if pending:
                    yield bytes(pending)

    def open(self, key: str, start: int = 0, end: int | None = None) -> S3Body:
        name = self._blob_name(key) if _KEY.fullmatch(key) else None
        return S3Body(self._read(name, start, end, key))

    async def _head(self, name: str) -> HeadObjectOutputTypeDef | None:
        s3 = await self._client()
        with self.faults("looking up a blob"):
            try:
                return await s3.head_object(Bucket=self.bucket, Key=name)
            except ClientError as exc:
                if error_code(exc) in _MISSING:
                    return None
                raise

    async def exists(self, key: str) -> bool:
        return await self.stat(key) is not None

    async def stat(self, key: str) -> StoredBlob | None:
        if not _KEY.fullmatch(key):
            return None
        head = await self._head(self._blob_name(key))
        if head is None:
            return None
        # Last-Modified, as the listing in ``stored`` reports it (to the second).
        modified = head["LastModified"].timestamp()
        return StoredBlob(key=key, size=head["ContentLength"], modified=modified)

    async def delete(self, key: str) -> None:
        if _KEY.fullmatch(key):
            s3 = await self._client()
            with self.faults("deleting a blob"):
                await s3.delete_object(Bucket=self.bucket, Key=self._blob_name(key))

    async def stored(self) -> AsyncIterator[StoredBlob]:
        s3 = await self._client()
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self._base}blobs/"
        )
        with self.faults("listing blobs"):
            async for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"].rsplit("/", 1)[-1]
                    if _KEY.fullmatch(key) and item["Key"] == self._blob_name(key):
                        modified = item["LastModified"].timestamp()
                        yield StoredBlob(key=key, size=item["Size"], modified=modified)

    async def leftovers(self, older_than: float, *, remove: bool) -> list[Leftover]:
        """Staged objects and unfinished multipart uploads under ``tmp/``, by the server's
        clock (Last-Modified, Initiated) against ours: keep ``older_than`` well above any
        clock skew."""
        s3 = await self._client()
        cutoff = time.time() - older_than
        found: list[Leftover] = []
        temp = f"{self._base}tmp/"
        with self.faults("listing leftovers"):
            async for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=temp
            ):
                for item in page.get("Contents", []):
                    modified = item["LastModified"].timestamp()
                    if modified < cutoff:
                        found.append(
                            Leftover(f"s3://{self.bucket}/{item['Key']}", item["Size"], modified)
                        )
                        if remove:
                            await s3.delete_object(Bucket=self.bucket, Key=item["Key"])
            async for uploads in s3.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=temp
            ):
                for up in uploads.get("Uploads", []):
                    started = up["Initiated"].timestamp()
                    if started < cutoff:
                        found.append(
                            Leftover(
                                f"unfinished upload {up['UploadId']} of s3://{self.bucket}/{up['Key']}",
                                0,
                                started,
                            )
                        )
                        if remove:
                            await s3.abort_multipart_upload(
                                Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"]
                            )
        return found

    async def check(self) -> None:
        # A listing, not HEAD bucket: HEAD answers have no body, so no error code to tell a
        # wrong secret from a missing bucket.
        s3 = await self._client()
        with self.faults("checking the bucket"):
            await s3.list_objects_v2(Bucket=self.bucket, Prefix=self._base, MaxKeys=1)

    async def close(self) -> None:
        await self._exit.aclose()
        self._s3 = None


class _PartHasher:
    """SHA-256 of an upload, computed part by part in a worker thread (hashlib releases the GIL
    on large buffers), so hashing one part overlaps receiving the next and sending the others,
    and the event loop is never blocked by it. Parts are hashed in order: ``update`` waits
    for the previous part's hashing before it starts the next one."""

    def __init__(self) -> None:
        self._hasher = hashlib.sha256()
        self._pending: asyncio.Future[None] | None = None

    async def update(self, part: bytes) -> None:
        if self._pending is not None:
            await self._pending
        self._pending = None
        if len(part) < _HASH_INLINE_BELOW:
            self._hasher.update(part)  # a thread hop costs more than hashing a little
        else:
            self._pending = asyncio.ensure_future(asyncio.to_thread(self._hasher.update, part))

    async def hexdigest(self) -> str:
        if self._pending is not None:
            await self._pending
            self._pending = None
        return self._hasher.hexdigest()

    async def cancel(self) -> None:
        """Let a running hash finish (a thread cannot be stopped) without raising."""
        pending, self._pending = self._pending, None
        if pending is not None:
            with anyio.CancelScope(shield=True), suppress(BaseException):
                await pending


def _range(start: int, end: int | None) -> str:
    return f"bytes={start}-" if end is None else f"bytes={start}-{end - 1}"


class S3Body:
    """A range of a blob streamed from S3: no local path, no I/O until iterated."""

    def __init__(self, stream: AsyncGenerator[bytes, None]) -> None:
        self._stream = stream

    @property
    def path(self) -> Path | None:
        return None

    def __aiter__(self) -> AsyncGenerator[bytes, None]:
        return self._stream


class S3StagedBlob:
    """An upload staged as ``prefix/tmp/<random>``: readable by range, then published or
    discarded."""

    def __init__(self, store: S3BlobStore, name: str, info: BlobInfo) -> None:
        self._store, self._name, self._info = store, name, info

    @property
    def info(self) -> BlobInfo:
        return self._info

    @property
    def path(self) -> Path | None:
        return None

    def read(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        return self._store._read(self._name, start, end, self._info.key)

    async def publish(self) -> bool:
        return await self._store._publish(self._name, self._info)

    async def discard(self) -> None:
        s3 = await self._store._client()
        with self._store.faults("removing a staged upload"):
            await s3.delete_object(Bucket=self._store.bucket, Key=self._name)
