"""AuditLog: audit records buffered in memory and stored in batches, off the request path.

Reads are audited after the response (api/audit.py builds the record); the records wait here
and a background task stores them in batches of up to ``FLUSH_BATCH`` every ``FLUSH_INTERVAL``
seconds. Writes are audited in their own transaction instead (service.py), never here. What a
crash can lose is documented in docs/operations.md ("Audit").
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from fhirbin.fhir.ids import TimeOrderedIds
from fhirbin.metadata.base import AuditRecord, MetadataStore

FLUSH_INTERVAL = 0.2  # seconds
FLUSH_BATCH = 500  # records per transaction, and the buffer size that triggers a flush
MAX_PENDING = 100_000  # records held while the database is unreachable; more are dropped

log = structlog.get_logger("fhirbin.audit")


class AuditLog:
    """Audit records buffered in memory, stored in batches by a background task.

    ``record`` never waits and never does I/O. ``flush`` stores everything pending (the
    AuditEvent handlers call it first, so a node reads its own records). If the database
    fails, records stay pending (at most ``max_pending``; later ones are dropped and counted)
    and the next flush retries; failures are logged with counts only.
    """

    def __init__(
        self,
        store: MetadataStore,
        *,
        interval: float | None = None,
        batch: int = FLUSH_BATCH,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.store = store
        self.interval = FLUSH_INTERVAL if interval is None else interval
        self.batch = batch
        self.max_pending = max_pending
        self.dropped = 0
        #: ids for request ids and records: time-ordered, cheap (fhir/ids.py)
        self.ids = TimeOrderedIds()
        self._pending: list[AuditRecord] = []
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def record(self, record: AuditRecord) -> None:
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            return
        self._pending.append(record)
        if len(self._pending) >= self.batch:
            self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="fhirbin-audit-flush")

    async def close(self) -> None:
        """Stop the background task, then store what is still pending (on shutdown)."""
        self._closing = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            # Even if the server already cancelled the task, what is pending is stored below.
            await asyncio.gather(task, return_exceptions=True)
        await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            while self._pending:
                # Copy, then drop once stored: records added meanwhile go to the end.
                batch = self._pending[: self.batch]
                try:
                    await self.store.add_audit(batch)
                except Exception as exc:
                    log.error(
                        "audit records could not be stored; will retry",
                        pending=len(self._pending),
                        error=type(exc).__name__,
                    )
                    return
                del self._pending[: len(batch)]
            if self.dropped:
                log.error("audit records were dropped: the buffer was full", dropped=self.dropped)
                self.dropped = 0

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            await self.flush()
