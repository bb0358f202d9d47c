"""One S3 multipart upload with a bounded number of parts in flight.

This module owns the part bookkeeping of the S3 store's uploads: ``send`` hands over one part and
waits only while ``in_flight`` parts are already on the wire, so an upload holds at most
``in_flight + 1`` parts in memory whatever its size; ``complete`` waits for them and lists them
in order; ``abort`` cancels them and tells the server to drop what it received.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from fhirbin.storage.s3faults import S3Faults

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef


class MultipartUpload:
    def __init__(
        self, s3: S3Client, faults: S3Faults, bucket: str, key: str, upload_id: str, in_flight: int
    ) -> None:
        self._s3, self._faults = s3, faults
        self.bucket, self.key, self.upload_id = bucket, key, upload_id
        self._slots = asyncio.Semaphore(in_flight)
        self._tasks: list[asyncio.Task[None]] = []
        self._etags: dict[int, str] = {}

    @classmethod
    async def create(
        cls, s3: S3Client, faults: S3Faults, bucket: str, key: str, in_flight: int
    ) -> MultipartUpload:
        with faults("starting an upload"):
            created = await s3.create_multipart_upload(Bucket=bucket, Key=key)
        return cls(s3, faults, bucket, key, created["UploadId"], in_flight)

    def _raise_failure(self) -> None:
        # A part that failed ends the upload at the next part instead of after the whole body.
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                task.result()

    async def send(self, data: bytes) -> None:
        await self._slots.acquire()
        try:
            self._raise_failure()
        except BaseException:
            self._slots.release()
            raise
        number = len(self._tasks) + 1
        self._tasks.append(asyncio.create_task(self._part(number, data)))

    async def _part(self, number: int, data: bytes) -> None:
        try:
            with self._faults("uploading a part"):
                sent = await self._s3.upload_part(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self.upload_id,
                    PartNumber=number,
                    Body=data,
                )
            self._etags[number] = sent["ETag"]
        finally:
            self._slots.release()

    def copied(self, number: int, etag: str) -> None:
        """Record a part the server copied itself (UploadPartCopy) rather than one sent."""
        self._etags[number] = etag

    async def complete(self) -> None:
        await asyncio.gather(*self._tasks)
        parts: list[CompletedPartTypeDef] = [
            {"PartNumber": n, "ETag": etag} for n, etag in sorted(self._etags.items())
        ]
        with self._faults("completing an upload"):
            await self._s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": parts},
            )

    async def abort(self) -> None:
        """Cancel the parts on the wire and drop the upload; the caller shields this."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with self._faults("aborting an upload"):
            await self._s3.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
            )
