"""AuditRecord <-> audit_event rows."""

from __future__ import annotations

from typing import Any

from fhirbin.metadata.base import AuditRecord
from fhirbin.metadata.times import to_micros


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
    }
