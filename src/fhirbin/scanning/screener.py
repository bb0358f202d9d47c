"""Builds the upload screener from the settings (see service.Screener).

The screener sits between the size limit and the blob store on every write (create, update,
FHIR Binary bodies and native bodies alike). For each upload it:

1. checks the declared type against the deny and allow lists before reading a byte;
2. holds back only the first :data:`~fhirbin.security.sniff.SNIFF_BYTES` (64 KiB), asks
   libmagic what they are and checks that against the deny list and the declared type
   (security/policy.py, security/mediatypes.py), so memory stays flat for any size;
3. when ``FHIRBIN_CLAMAV`` is set, feeds every chunk to clamd's INSTREAM as it passes on to the
   blob store, and waits for clamd's verdict before the last chunk is handed over, so the blob
   store publishes only clean content.

Refusals are FhirbinErrors raised while the chunks are iterated; the blob store then publishes
nothing and no catalogue row is written. Statuses: 415 for a refused type, 422 for malware,
413 when the upload is larger than clamd's StreamMaxLength (fail closed: unscanned content is
never stored because it was too big to scan), 503 with Retry-After when clamd cannot give a
verdict. With ``FHIRBIN_CLAMAV_FAIL_OPEN=true`` an upload is stored unscanned (with a warning
in the log) when clamd cannot be reached or does not answer in time; a connection clamd drops
mid-scan or an ERROR answer is still a 503, because that is how clamd reacts to content it
cannot handle and failing open there would let such content skip the scan.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass

import structlog

from fhirbin.errors import PayloadTooLarge, ServiceUnavailable, UnprocessableContent
from fhirbin.scanning.clamd import (
    ClamdAddress,
    ClamdError,
    ClamdLimitExceeded,
    ClamdTimeout,
    ClamdUnreachable,
    InstreamScan,
)
from fhirbin.security.policy import TypePolicy
from fhirbin.security.sniff import SNIFF_BYTES, SniffRecord, sniff

ScreenerFunc = Callable[[str, AsyncIterable[bytes], SniffRecord], AsyncIterator[bytes]]

#: Seconds a client is asked to wait (Retry-After) when the virus scanner is unavailable.
RETRY_AFTER = 10

log = structlog.get_logger("fhirbin.scanning")


@dataclass(frozen=True)
class Screener:
    """Type policy plus an optional clamd; call it as ``screener(declared_type, chunks)``."""

    policy: TypePolicy
    clamd: ClamdAddress | None = None
    fail_open: bool = False
    timeout: float = 30.0
    #: hears each outcome: clean, malware, unscanned, unavailable, type-refused (metrics.py)
    verdicts: Callable[[str], None] | None = None

    def _heard(self, verdict: str) -> None:
        if self.verdicts is not None:
            self.verdicts(verdict)

    async def __call__(
        self,
        declared_type: str,
        chunks: AsyncIterable[bytes],
        record: SniffRecord | None = None,
    ) -> AsyncIterator[bytes]:
        try:
            self.policy.check_declared(declared_type)
        except Exception:
            self._heard("type-refused")
            raise
        iterator = aiter(chunks)
        head: list[bytes] = []
        if self.policy.sniffs:
            size = 0
            while size < SNIFF_BYTES:
                chunk = await anext(iterator, None)
                if chunk is None:
                    break
                head.append(chunk)
                size += len(chunk)
            found = await asyncio.to_thread(sniff, b"".join(head)[:SNIFF_BYTES])
            if record is not None:  # for the inspection after staging (service.Inspector)
                record.found = found
            try:
                self.policy.check_content(declared_type, found)
            except Exception:
                self._heard("type-refused")
                raise
        scan = await self._open_scan()
        try:
            for chunk in head:
                scan = await self._feed(scan, chunk)
                yield chunk
            del head
            async for chunk in iterator:
                scan = await self._feed(scan, chunk)
                yield chunk
            if scan is not None:
                await self._verdict(scan, declared_type)
        finally:
            if scan is not None:
                await scan.close()

    async def _open_scan(self) -> InstreamScan | None:
        if self.clamd is None:
            return None
        try:
            return await InstreamScan.open(self.clamd, self.timeout)
        except ClamdUnreachable as exc:
            self._no_verdict(exc)
            return None

    async def _feed(self, scan: InstreamScan | None, chunk: bytes) -> InstreamScan | None:
        if scan is None:
            return None
        try:
            await scan.feed(chunk)
        except ClamdError as exc:
            await scan.close()
            self._no_verdict(exc)
            return None
        return scan

    async def _verdict(self, scan: InstreamScan, declared_type: str) -> None:
        try:
            verdict = await scan.verdict()
        except ClamdError as exc:
            self._no_verdict(exc)
            return
        if verdict.clean:
            self._heard("clean")
            return
        self._heard("malware")
        log.warning(
            "upload refused: malware found",
            signature=verdict.signature,
            declared_type=declared_type,
            size=scan.sent,
        )
        raise UnprocessableContent(
            f"The content was refused: the virus scanner found {verdict.signature}."
        )

    def _no_verdict(self, exc: ClamdError) -> None:
        """No verdict: store unscanned (fail open, only for an outage) or refuse."""
        if isinstance(exc, ClamdLimitExceeded):
            self._heard("unavailable")
            log.warning(
                "upload refused: larger than clamd's StreamMaxLength", clamd=str(self.clamd)
            )
            raise PayloadTooLarge(
                "Binary content is larger than this server's virus scanner accepts "
                "(clamd StreamMaxLength), so it cannot be scanned and was not stored."
            ) from exc
        if self.fail_open and isinstance(exc, ClamdUnreachable | ClamdTimeout):
            log.warning(
                "clamd unavailable: storing the upload unscanned (FHIRBIN_CLAMAV_FAIL_OPEN)",
                clamd=str(self.clamd),
                error=str(exc),
            )
            self._heard("unscanned")
            return
        self._heard("unavailable")
        log.error("clamd unavailable: upload refused", clamd=str(self.clamd), error=str(exc))
        raise ServiceUnavailable(
            "The virus scanner is not available, so the content was not stored; try again later.",
            retry_after=RETRY_AFTER,
        ) from exc
