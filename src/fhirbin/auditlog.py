"""AuditLog: audit records buffered in memory and stored in batches, off the request path.

Reads, searches and refusals are audited after the response: the request path hands over only
its facts with a builder (:meth:`AuditLog.defer`; api/observe.py hands over the finished
request and api/audit_records.py builds its record), and a background task builds the records
and stores them in batches of up to ``FLUSH_BATCH`` every ``FLUSH_INTERVAL`` seconds. Writes
are audited in their own transaction instead (service.py), never here. What a crash, a clean
shutdown and a database outage do to the buffered records is documented in
docs/security.md#audit and docs/operations.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

import structlog

from fhirbin.fhir.ids import TimeOrderedIds
from fhirbin.metadata.base import AuditRecord, MetadataStore

FLUSH_INTERVAL = 0.2  # seconds
FLUSH_BATCH = 500  # records per transaction, and the buffer size that triggers a flush
MAX_PENDING = 100_000  # records held while the database is unreachable; more are dropped

log = structlog.get_logger("fhirbin.audit")
T = TypeVar("T")

#: Makes the record of some facts, given a new record id; None when there is nothing to record.
Builder = Callable[[T, str], AuditRecord | None]


class AuditLog:
    """Audit records buffered in memory, stored in batches by a background task.

    ``record`` (a built record) and ``defer`` (facts and the builder that makes their record
    later) never wait and never do I/O. ``flush`` builds and stores everything pending (the
    AuditEvent handlers call it first, so a node reads its own records). If the database
    fails, the built records stay pending (at most ``max_pending`` items; later ones are
    dropped and counted) and the next flush retries; failures are logged with counts only. A
    builder that raises loses that one record, logged.
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
        # Built records, or (builder, facts) not built yet; in arrival order.
        self._pending: list[AuditRecord | tuple[Builder[Any], Any]] = []
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def record(self, record: AuditRecord) -> None:
        """Store ``record`` with the next batch."""
        self._add(record)

    def defer(self, build: Builder[T], facts: T) -> None:
        """Store ``build(facts, <new record id>)`` with the next batch: the record is made in
        the flush, off the request path."""
        self._add((build, facts))

    def _add(self, item: AuditRecord | tuple[Builder[Any], Any]) -> None:
        pending = self._pending
        if len(pending) >= self.max_pending:
            self.dropped += 1
            return
        pending.append(item)
        if len(pending) >= self.batch:
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
                # Copy, then drop once stored: items added meanwhile go to the end.
                taken = self._pending[: self.batch]
                batch = self._built(taken)
                try:
                    if batch:
                        await self.store.add_audit(batch)
                except Exception as exc:
                    # Keep the records built, not their facts: a retry stores the same ids.
                    self._pending[: len(taken)] = batch
                    log.error(
                        "audit records could not be stored; will retry",
                        pending=len(self._pending),
                        error=type(exc).__name__,
                    )
                    return
                del self._pending[: len(taken)]
            if self.dropped:
                log.error("audit records were dropped: the buffer was full", dropped=self.dropped)
                self.dropped = 0

    def _built(self, items: list[AuditRecord | tuple[Builder[Any], Any]]) -> list[AuditRecord]:
        records: list[AuditRecord] = []
        failed: str | None = None
        lost = 0
        for item in items:
            if isinstance(item, AuditRecord):
                records.append(item)
                continue
            build, facts = item
            try:
                record = build(facts, self.ids.next())
            except Exception as exc:  # a bug: lose this record, not the whole batch
                failed, lost = type(exc).__name__, lost + 1
                continue
            if record is not None:
                records.append(record)
        if lost:
            log.error("audit records could not be built", lost=lost, error=failed)
        return records

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            await self.flush()
