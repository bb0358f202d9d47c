"""The audit records of requests: pure functions of a request's facts (docs/security.md#audit).

* :func:`request_record` makes the record of a finished request from its
  :class:`~fhirbin.api.context.RequestContext` and what went out (:class:`Finished`). The
  outermost middleware (api/observe.py) hands these facts to the AuditLog (auditlog.py), whose
  background flush calls this builder: the datetime, the outcome, the query string and the
  record id are made there, off the request path.
* :func:`write_audit` and :func:`expunge_audit` make the record of a successful write, inside
  the write's own transaction (service.py), and mark the context ``audited`` so the request's
  own record is skipped.

The record says who (the verified token's client id, subject and patient — nothing for an
unauthenticated or refused token: its claims are never trusted; the token endpoint's
authenticated client), what (the interaction from the method and path, the version a read
served and the search parameters applied, which handlers leave in the context), the outcome
from the final status (R4 auditevent.html: 0 / 4 / 8), when (the request's start), from where
(the peer address of the ASGI scope; ``X-Forwarded-For`` is NOT honoured: anyone can send it,
so behind a gateway the address is the gateway's and the gateway keeps its own log), the bytes
of body sent, the request id and why a request was refused (the OperationOutcome's
diagnostics, never a body). Records never hold content bytes or tokens: bodies are only
counted, the query recorded is the parameters a handler applied (never the raw query string,
which may hold a refused ``access_token``).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import NamedTuple

from starlette.types import Scope

from fhirbin.api.context import RequestContext, context_of
from fhirbin.fhir.audit import outcome_for
from fhirbin.fhir.paging import query_string
from fhirbin.metadata.base import AuditRecord, BinaryVersion
from fhirbin.service import AuditFor

__all__ = ["Finished", "expunge_audit", "peer", "request_record", "write_audit"]


class Finished(NamedTuple):
    """What the request path knows once a request is over; :func:`request_record` makes the
    rest."""

    context: RequestContext
    #: the connecting address (``scope["client"][0]``), if the server gave one
    peer: str | None
    #: the status sent, 0 when no response started
    status: int
    #: body bytes sent (a ``pathsend``'s Content-Length)
    sent: int
    #: the exception that ended the request, if one did (its type only: no traceback kept)
    failure: type[BaseException] | None


def peer(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def request_record(done: Finished, record_id: str) -> AuditRecord | None:
    """The record of a finished request; None for a successful write, which stored its own
    (:func:`write_audit`)."""
    ctx = done.context
    status = done.status
    failure = done.failure
    detail: str | None = None
    if failure is not None:
        if not status:
            # Nothing went out: the server's error handler answers 500 (an exception), or the
            # client left (cancellation; recorded as 499, nginx's "client closed request").
            cancelled = issubclass(failure, asyncio.CancelledError)
            status = 499 if cancelled else 500
            detail = (
                "The client closed the connection before the response."
                if cancelled
                else f"Unhandled {failure.__name__}."
            )
        else:
            detail = f"The response was aborted after {done.sent} bytes ({failure.__name__})."
    elif not status:
        status = 500
        detail = "No response was sent."
    elif ctx.audited and status < 400:
        return None  # a write that stored its own record in its transaction
    elif status >= 400:
        detail = ctx.refusal
    interaction = ctx.interaction
    if interaction is None:
        raise ValueError("the request was not classified")  # the AuditLog logs the loss
    claims = ctx.claims
    version = ctx.version if ctx.version is not None else interaction.version
    return AuditRecord(
        id=record_id,
        recorded=datetime.fromtimestamp(ctx.started, UTC),
        action=interaction.action,
        subtype=interaction.subtype,
        outcome="8" if failure is not None else outcome_for(status),
        status=status,
        client_id=ctx.who,
        subject=claims.subject if claims is not None else None,
        source=done.peer,
        entity=interaction.entity,
        entity_version=version if interaction.entity is not None else None,
        query=None if ctx.query is None else query_string(ctx.query),
        bytes_sent=done.sent,
        detail=detail,
        request_id=ctx.request_id,
        patient=claims.patient if claims is not None else None,
    )


_WRITES = {"create": "C", "update": "U", "delete": "D"}


def write_audit(scope: Scope, subtype: str) -> AuditFor:
    """The record of a successful write, built by the service once the version is known and
    stored in the same transaction (so a version and its record exist together or not at all).

    The status is the write's: 201 for a version 1 (create, update-as-create), 204 for a
    deletion, else 200 (a PUT bringing back a deleted Binary answers 201 but is recorded 200:
    the record is built before the service knows). ``bytes_sent`` is unknown (the response has
    not been sent) and left empty.
    """
    action = _WRITES[subtype]

    def build(version: BinaryVersion) -> AuditRecord:
        ctx = context_of(scope)
        ctx.audited = True
        claims = ctx.claims
        status = 204 if version.deleted else 201 if version.version == 1 else 200
        return AuditRecord(
            id=str(uuid.uuid4()),
            recorded=version.last_updated,
            action=action,
            subtype=subtype,
            outcome="0",
            status=status,
            client_id=claims.client_id if claims is not None else None,
            subject=claims.subject if claims is not None else None,
            source=peer(scope),
            entity=f"Binary/{version.id}",
            entity_version=version.version,
            request_id=ctx.request_id or None,
            patient=claims.patient if claims is not None else None,
        )

    return build


def expunge_audit(scope: Scope, binary_id: str) -> AuditRecord:
    """The record of a $expunge, stored in the expunge's own transaction: a deletion (D) by
    the FHIR ``operation`` interaction, naming the Binary but no version (none remains)."""
    ctx = context_of(scope)
    ctx.audited = True
    claims = ctx.claims
    return AuditRecord(
        id=str(uuid.uuid4()),
        recorded=datetime.now(UTC),
        action="D",
        subtype="operation",
        outcome="0",
        status=200,
        client_id=claims.client_id if claims is not None else None,
        subject=claims.subject if claims is not None else None,
        source=peer(scope),
        entity=f"Binary/{binary_id}",
        request_id=ctx.request_id or None,
        patient=claims.patient if claims is not None else None,
    )
