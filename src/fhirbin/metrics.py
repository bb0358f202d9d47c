"""The Prometheus metrics of one fhirbin process (docs/operations.md, "Metrics").

:class:`Metrics` owns its own ``CollectorRegistry`` (no module-level state: every runtime, and
so every test app, has its own). Under ``fhirbin serve`` the workers are separate processes:
``serve`` makes a fresh folder, names it in ``PROMETHEUS_MULTIPROC_DIR`` before any worker
imports prometheus-client, and each worker's values then live in memory-mapped files there;
:meth:`Metrics.exposition` sums every worker's files (prometheus-client's multiprocess mode), so
a scrape answered by any worker shows the whole server.

Label values are bounded sets chosen by the server: FHIR interaction codes (``read``,
``vread``, ``search-type``, ``create`` ...), numeric status strings, screening verdicts and
dependency names. Never an id, a token, a client or anything a request chose.

The request path records through cached label children (``labels()`` takes a lock and hashes
its arguments on every call; the cache does that once per label combination).
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

__all__ = ["CONTENT_TYPE", "VERDICTS", "Metrics"]

#: The Prometheus text exposition format, version 0.0.4.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Screening outcomes (scanning/screener.py): ``clean`` (clamd found nothing), ``malware``,
#: ``unscanned`` (clamd unavailable, stored under FHIRBIN_CLAMAV_FAIL_OPEN), ``unavailable``
#: (clamd unavailable, refused), ``type-refused`` (the content-type policy refused it), and
#: ``inspection-refused`` (deep inspection, inspection/inspector.py, refused the staged bytes).
VERDICTS = ("clean", "malware", "unscanned", "unavailable", "type-refused", "inspection-refused")

#: Request durations: a small read takes well under a millisecond, a 1 GiB upload seconds.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _Pending:
    """One interaction's requests since the last flush."""

    __slots__ = ("buckets", "count", "received", "seconds", "sent")

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.buckets = [0] * (len(_BUCKETS) + 1)  # the last one: +Inf
        self.sent = 0
        self.received = 0


class Metrics:
    """fhirbin's metrics; ``multiprocess_dir`` is ``PROMETHEUS_MULTIPROC_DIR`` under serve."""

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        # Imported here, not with this module: prometheus-client chooses between in-process
        # and multiprocess values once, when first imported, from PROMETHEUS_MULTIPROC_DIR,
        # which ``serve`` sets after importing the runtime.
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess_dir = multiprocess_dir
        self.registry = registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "fhirbin_requests",
            "Requests answered, by FHIR interaction and HTTP status.",
            ["interaction", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "fhirbin_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by FHIR interaction.",
            ["interaction"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.received = Counter(
            "fhirbin_received_bytes",
            "Request body bytes received, by FHIR interaction.",
            ["interaction"],
            registry=registry,
        )
        self.sent = Counter(
            "fhirbin_sent_bytes",
            "Response body bytes sent, by FHIR interaction.",
            ["interaction"],
            registry=registry,
        )
        self.uploads = Gauge(
            "fhirbin_uploads_in_flight",
            "Create and update requests being received or processed now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.verdicts = Counter(
            "fhirbin_screening_verdicts",
            "Screening outcomes of uploaded content, by verdict.",
            ["verdict"],
            registry=registry,
        )
        self.audit_backlog = Gauge(
            "fhirbin_audit_backlog",
            "Audit records buffered in memory, not yet stored in the catalogue.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.dependency_errors = Counter(
            "fhirbin_dependency_errors",
            "Requests that failed because a dependency was unavailable or full.",
            ["dependency"],
            registry=registry,
        )
        # What requests added since the last flush, per (interaction, status) and interaction.
        self._counts: dict[tuple[str, int], int] = {}
        self._pending: dict[str, _Pending] = {}

    def request(
        self, interaction: str, status: int, seconds: float, received: int, sent: int
    ) -> None:
        """Record one answered request: added up in this process, handed to prometheus-client
        by :meth:`flush` (each of its updates takes a lock and, across workers, writes a
        memory-mapped file: four of them per request were 6% of a small read's CPU)."""
        key = (interaction, status)
        self._counts[key] = self._counts.get(key, 0) + 1
        pending = self._pending.get(interaction)
        if pending is None:
            pending = self._pending[interaction] = _Pending()
        pending.count += 1
        pending.seconds += seconds
        # Histogram buckets are cumulative "le": the first bound not below the value.
        pending.buckets[bisect.bisect_left(_BUCKETS, seconds)] += 1
        pending.sent += sent
        pending.received += received

    def flush(self) -> None:
        """Hand what requests added to prometheus-client: every second (api/app.py) and before
        every exposition, so a scrape of this process is exact and another worker's figures
        are at most a second old. A Histogram has no public way to add several observations
        at once; its per-bucket values (``_buckets``, ``_sum``, stable since prometheus-client
        0.4) take the sums, and tests/test_metrics.py checks the exposition equals one
        ``observe`` per request."""
        counts, self._counts = self._counts, {}
        pending, self._pending = self._pending, {}
        for (interaction, status), count in counts.items():
            self.requests.labels(interaction, str(status)).inc(count)
        for interaction, added in pending.items():
            duration = self.duration.labels(interaction)
            duration._sum.inc(added.seconds)
            for bucket, count in zip(duration._buckets, added.buckets, strict=True):
                if count:
                    bucket.inc(count)
            if added.sent:
                self.sent.labels(interaction).inc(added.sent)
            if added.received:
                self.received.labels(interaction).inc(added.received)

    def verdict(self, verdict: str) -> None:
        self.verdicts.labels(verdict).inc()

    def dependency_error(self, dependency: str) -> None:
        self.dependency_errors.labels(dependency.replace(" ", "_")).inc()

    def exposition(self) -> bytes:
        """The Prometheus text of the whole server (every worker's, in multiprocess mode)."""
        self.flush()
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(merged, path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
        return generate_latest(merged)
