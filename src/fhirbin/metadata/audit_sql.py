"""AuditRecord <-> audit_event rows, and the statements that read them.

Audit records are append-only: ``add_audit`` inserts a batch in one transaction (the API
buffers read and refusal records and flushes them in batches; a write's record goes in with
the version itself, ``SqlMetadataStore.add_version``). ``search_statement`` lists them oldest
first by ``(recorded, id)`` with keyset paging, like the catalogue's searches: "strictly after
(r, i)" is expanded into ``recorded > r OR (recorded = r AND id > i)`` plus the redundant bound
``recorded >= r``, the term an index range can use (``ix_audit_event_entity_recorded`` when an
entity is given, ``ix_audit_event_recorded`` otherwise).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import RowMapping, Select, and_, or_, select

from fhirbin.metadata.base import AuditQuery, AuditRecord
from fhirbin.metadata.schema import audit_event
from fhirbin.metadata.times import from_micros, to_micros


def audit_values(record: AuditRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "recorded": to_micros(record.recorded),
        "action": record.action,
        "subtype": record.subtype,
        "outcome": record.outcome,
        "status": record.status,
        "client_id": record.client_id,
        "subject": record.subject,
        "source": record.source,
        "entity": record.entity,
        "entity_version": record.entity_version,
        "query": record.query,
        "bytes_sent": record.bytes_sent,
        "detail": record.detail,
        "request_id": record.request_id,
        "patient": record.patient,
    }


def audit_from_row(row: RowMapping) -> AuditRecord:
    return AuditRecord(
        id=row["id"],
        recorded=from_micros(row["recorded"]),
        action=row["action"],
        subtype=row["subtype"],
        outcome=row["outcome"],
        status=row["status"],
        client_id=row["client_id"],
        subject=row["subject"],
        source=row["source"],
        entity=row["entity"],
        entity_version=row["entity_version"],
        query=row["query"],
        bytes_sent=row["bytes_sent"],
        detail=row["detail"],
        request_id=row["request_id"],
        patient=row["patient"],
    )


def search_statement(query: AuditQuery) -> Select[Any] | None:
    """The page of records ``query`` asks for; None when nothing can match (no query needed)."""
    if query.limit <= 0:
        return None
    recorded, record_id = audit_event.c.recorded, audit_event.c.id
    statement = select(audit_event)
    if query.id is not None:
        statement = statement.where(record_id == query.id)
    if query.entity is not None:
        statement = statement.where(audit_event.c.entity == query.entity)
    lower, upper = query.since_us, query.until_us
    if query.after is not None:
        after_us, after_id = query.after
        lower = after_us if lower is None else max(lower, after_us)
        statement = statement.where(
            or_(recorded > after_us, and_(recorded == after_us, record_id > after_id))
        )
    if lower is not None and upper is not None and lower >= upper:
        return None
    if lower is not None:
        statement = statement.where(recorded >= lower)
    if upper is not None:
        statement = statement.where(recorded < upper)
    return statement.order_by(recorded, record_id).limit(query.limit)
