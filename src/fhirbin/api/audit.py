"""The audit trail: every FHIR request becomes one AuditEvent record (docs/security.md#audit).

Three parts:

* :class:`AuditMiddleware`, a pure ASGI middleware OUTSIDE the auth middleware (so the 401s it
  renders itself are seen), records who (the verified token's client id, subject and patient
  — nothing for an unauthenticated or refused token: its claims are never trusted), what (the
  interaction from the method and path, the version a read served and the search parameters
  applied, which handlers leave in ``scope["fhirbin.audit"]``), the outcome from the final
  status (R4 auditevent.html: 0 / 4 / 8), when (the request's start), from where (the peer
  address of the ASGI scope; ``X-Forwarded-For`` is NOT honoured: anyone can send it, so behind
  a gateway the address is the gateway's and the gateway keeps its own log), the bytes of body
  sent (``Content-Length`` for a ``pathsend``), the request id (``X-Request-Id`` when sent and
  well-formed, else a new UUID; echoed on the response, R4 http.html#custom) and why a request
  was refused (the OperationOutcome's diagnostics, via :func:`note_refusal`; never a body). It
  skips the public discovery endpoints and CORS preflights, and does no I/O of its own.
* :class:`AuditLog` buffers those records in memory and stores them in batches with
  ``MetadataStore.add_audit`` (every ``FLUSH_INTERVAL`` seconds, at ``FLUSH_BATCH`` records,
  and on shutdown), so a read costs no database write of its own. The price: a crash (not a
  shutdown) loses up to one flush interval of read, search and refusal records. Successful
  writes are not buffered: :func:`write_audit` builds their record inside the write's own
  transaction (``BinaryService.create/update/delete(audit=...)``), so a version and its record
  are stored together or not at all, and the middleware then skips them.
* ``GET [base]/AuditEvent`` (search by ``entity`` and ``date``, paged) and
  ``GET [base]/AuditEvent/[id]``, for tokens holding ``system/AuditEvent.rs`` (SMART scopes;
  note that ``system/*.rs`` covers AuditEvent too), answering BALP-shaped AuditEvents in JSON
  or XML (``fhir/audit.py``). Reading the audit is itself audited.

Audit records never hold content bytes or tokens: bodies are only counted, the query recorded
is the parameters a handler applied (never the raw query string, which may hold a refused
``access_token``), and refusal reasons are the server's own diagnostics.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhirbin.api.context import context_of
from fhirbin.api.middleware import CLAIMS_KEY, FHIR_PREFIX
from fhirbin.api.render import media_type, pretty, resource_bytes, resource_response
from fhirbin.api.requests import runtime
from fhirbin.api.responses import StreamedResponse
from fhirbin.auditlog import AuditLog
from fhirbin.auth.scopes import allows, needed_scope
from fhirbin.auth.tokens import AccessClaims
from fhirbin.errors import BadRequest, Forbidden, NotFound
from fhirbin.fhir.audit import audit_event, classify, outcome_for, parse_audit_search
from fhirbin.fhir.bundle import JsonEntry, bundle_stream
from fhirbin.fhir.dates import datetime_to_us
from fhirbin.fhir.ids import TimeOrderedIds, check_id
from fhirbin.fhir.negotiate import Representation, fhir_format
from fhirbin.fhir.paging import decode_cursor, encode_cursor, page_links, query_string
from fhirbin.fhir.prefer import prefer_handling
from fhirbin.fhir.xml_bundle import XmlEntry, bundle_xml_stream
from fhirbin.fhir.xml_write import resource_to_xml
from fhirbin.metadata.base import AuditQuery, AuditRecord, BinaryVersion
from fhirbin.service import AuditFor

if TYPE_CHECKING:
    from fhirbin.runtime import Runtime

__all__ = [
    "AUDIT_KEY",
    "REQUEST_ID_KEY",
    "AuditLog",
    "AuditMiddleware",
    "audit_log",
    "expunge_audit",
    "note_refusal",
    "read",
    "request_id_of",
    "search",
    "start_audit",
    "stop_audit",
    "write_audit",
]

#: What a handler leaves for the audit middleware: a dict with any of ``version`` (the version
#: a read served), ``query`` (the ``(name, value)`` search parameters applied), ``client_id``
#: (the token endpoint's authenticated client), ``audited`` (set by :func:`write_audit`: the
#: write stored its own record).
AUDIT_KEY = "fhirbin.audit"
#: The request id (X-Request-Id) of the request, for handlers and logs.
REQUEST_ID_KEY = "fhirbin.request_id"
#: The request's fhir.audit.Interaction, when api/observe.py classified it already.
INTERACTION_KEY = "fhirbin.interaction"
#: The dependency a 503/507 blamed (``"database"``...), for the metrics (api/observe.py).
FAULT_KEY = "fhirbin.fault"
#: Why the request was refused: the OperationOutcome's diagnostics (set by api/errors.py).
REFUSAL_KEY = "fhirbin.refusal"

MAX_DETAIL = 1000  # characters of a refusal reason kept

#: The public discovery endpoints (docs/decisions.md#public-endpoints), not audited: they
#: reveal nothing about anyone's data.
#: The token endpoint IS audited (subtype ``login``).
_DISCOVERY = frozenset({f"{FHIR_PREFIX}/metadata"})
_WELL_KNOWN = f"{FHIR_PREFIX}/.well-known/"
# A request id is echoed in a header and stored: a conservative token syntax, bounded.
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
_DEFAULT_COUNT = 20
_MAX_COUNT = 1000

log = structlog.get_logger("fhirbin.audit")
T = TypeVar("T")


# --- the application's audit log ------------------------------------------------------------


def audit_log(rt: Runtime) -> AuditLog:
    return rt.audit


def start_audit(rt: Runtime) -> AuditLog:
    """Start the runtime's AuditLog (in the lifespan, after the catalogue)."""
    rt.audit.start()
    return rt.audit


async def stop_audit(rt: Runtime) -> None:
    """Flush and stop (in the lifespan, before the catalogue closes)."""
    await rt.audit.close()


# --- recording ------------------------------------------------------------------------------


def note_refusal(scope: Scope, exc: Exception) -> None:
    """Remember why a request was refused (an error's diagnostics; the error renderer calls
    this). Diagnostics are the server's own words and never quote a body or a token."""
    diagnostics = getattr(exc, "diagnostics", None)
    if isinstance(diagnostics, str):
        hint = getattr(exc, "audit_detail", None)  # e.g. a 404 that hides an existing Binary
        detail = f"{diagnostics} ({hint})" if hint else diagnostics
        scope[REFUSAL_KEY] = detail[:MAX_DETAIL]


def _audited(path: str) -> bool:
    if path != FHIR_PREFIX and not path.startswith(FHIR_PREFIX + "/"):
        return False
    return path not in _DISCOVERY and not path.startswith(_WELL_KNOWN)


def request_id_of(scope: Scope, ids: TimeOrderedIds) -> str:
    """``X-Request-Id`` when sent and well-formed, else a new id from ``ids``."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            if _REQUEST_ID_RE.fullmatch(text):
                return text
            break
    return ids.next()


def _peer(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def _content_length(headers: Sequence[tuple[bytes, bytes]]) -> int:
    for name, value in headers:
        if name.lower() == b"content-length" and value.isdigit():
            return int(value)
    return 0


class _Sent:
    """What went out: the status, the response headers, the body bytes."""

    __slots__ = ("bytes", "headers", "status")

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: Sequence[tuple[bytes, bytes]] = ()
        self.bytes = 0


class AuditMiddleware:
    """Records one AuditRecord per FHIR request into the AuditLog; see the module docstring."""

    def __init__(self, app: ASGIApp, *, log: Callable[[], AuditLog]) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or not _audited(scope["path"]):
            await self.app(scope, receive, send)
            return
        started = datetime.now(UTC)
        audit = self.log()
        # Settled (and echoed) by api/observe.py when the app has it; else here.
        settled: str | None = scope.get(REQUEST_ID_KEY)
        request_id = settled if settled is not None else request_id_of(scope, audit.ids)
        scope[REQUEST_ID_KEY] = request_id
        extra = [] if settled is not None else [(b"x-request-id", request_id.encode("latin-1"))]
        sent = _Sent()

        async def counting_send(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.body":
                sent.bytes += len(message.get("body", b""))
            elif kind == "http.response.start":
                sent.status = message["status"]
                sent.headers = [*message.get("headers", ()), *extra]
                if extra:
                    message = {**message, "headers": sent.headers}
            elif kind == "http.response.pathsend":
                sent.bytes += _content_length(sent.headers)
            await send(message)

        failure: BaseException | None = None
        try:
            await self.app(scope, receive, counting_send)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            record = _request_record(scope, audit.ids.next(), started, request_id, sent, failure)
            if record is not None:
                audit.record(record)


def _request_record(
    scope: Scope,
    record_id: str,
    started: datetime,
    request_id: str,
    sent: _Sent,
    failure: BaseException | None,
) -> AuditRecord | None:
    note: dict[str, Any] = dict(scope.get(AUDIT_KEY) or {})
    context = context_of(scope)  # interim: the facts the read path leaves in the context
    if context.version is not None:
        note["version"] = context.version
    if context.query is not None:
        note["query"] = context.query
    status = sent.status
    detail: str | None = None
    if failure is not None:
        if status is None:
            # Nothing went out: the server's error handler answers 500 (an exception), or the
            # client left (cancellation; recorded as 499, nginx's "client closed request").
            cancelled = isinstance(failure, asyncio.CancelledError)
            status = 499 if cancelled else 500
            detail = (
                "The client closed the connection before the response."
                if cancelled
                else f"Unhandled {type(failure).__name__}."
            )
        else:
            detail = (
                f"The response was aborted after {sent.bytes} bytes ({type(failure).__name__})."
            )
    elif status is None:
        status = 500
        detail = "No response was sent."
    elif note.get("audited") and status < 400:
        return None  # a write that stored its own record in its transaction
    elif status >= 400:
        detail = scope.get(REFUSAL_KEY)
    interaction = scope.get(INTERACTION_KEY) or classify(
        scope["method"], scope["path"][len(FHIR_PREFIX) :]
    )
    claims: AccessClaims | None = scope.get(CLAIMS_KEY)
    used = note.get("query")
    version = note.get("version", interaction.version)
    return AuditRecord(
        id=record_id,
        recorded=started,
        action=interaction.action,
        subtype=interaction.subtype,
        outcome="8" if failure is not None else outcome_for(status),
        status=status,
        client_id=claims.client_id if claims is not None else note.get("client_id"),
        subject=claims.subject if claims is not None else None,
        source=_peer(scope),
        entity=interaction.entity,
        entity_version=version if interaction.entity is not None else None,
        query=None if used is None else query_string(used),
        bytes_sent=sent.bytes,
        detail=detail,
        request_id=request_id,
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
        note: dict[str, Any] = scope.setdefault(AUDIT_KEY, {})
        note["audited"] = True
        claims: AccessClaims | None = scope.get(CLAIMS_KEY)
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
            source=_peer(scope),
            entity=f"Binary/{version.id}",
            entity_version=version.version,
            request_id=scope.get(REQUEST_ID_KEY),
            patient=claims.patient if claims is not None else None,
        )

    return build


def expunge_audit(scope: Scope, binary_id: str) -> AuditRecord:
    """The record of a $expunge, stored in the expunge's own transaction: a deletion (D) by
    the FHIR ``operation`` interaction, naming the Binary but no version (none remains)."""
    note: dict[str, Any] = scope.setdefault(AUDIT_KEY, {})
    note["audited"] = True
    claims: AccessClaims | None = scope.get(CLAIMS_KEY)
    return AuditRecord(
        id=str(uuid.uuid4()),
        recorded=datetime.now(UTC),
        action="D",
        subtype="operation",
        outcome="0",
        status=200,
        client_id=claims.client_id if claims is not None else None,
        subject=claims.subject if claims is not None else None,
        source=_peer(scope),
        entity=f"Binary/{binary_id}",
        request_id=scope.get(REQUEST_ID_KEY),
        patient=claims.patient if claims is not None else None,
    )


# --- GET [base]/AuditEvent ------------------------------------------------------------------

_ACTION_NAMES = {"r": "read", "s": "search"}


def _require(request: Request, action: str) -> None:
    """SMART scopes: reading the audit trail needs system/AuditEvent.r / .s (or system/*)."""
    claims: AccessClaims = request.scope[CLAIMS_KEY]
    if not allows(claims.scope, action, resource="AuditEvent"):
        needed = needed_scope(action, "AuditEvent")
        raise Forbidden(
            f"The access token's scopes do not allow {_ACTION_NAMES[action]} on AuditEvent "
            f"(needs {needed}).",
            scope=needed,
        )


def _format(request: Request) -> Representation:
    formats = request.query_params.getlist("_format")
    return fhir_format(formats[-1] if formats else None, request.headers.get("accept"))


async def search(request: Request) -> Response:
    """GET [base]/AuditEvent?entity=Binary/<id>&date=ge…&_count= — oldest first, keyset paged
    (a ``next`` link only); no ``total`` (it would cost a count of the whole trail)."""
    _require(request, "s")
    params = list(request.query_params.multi_items())
    fmt = _format(request)
    strict = prefer_handling(request.headers.get("prefer")) == "strict"
    query = parse_audit_search(
        params,
        strict,
        now_us=time.time_ns() // 1000,
        default_count=_DEFAULT_COUNT,
        max_count=_MAX_COUNT,
    )
    request.scope[AUDIT_KEY] = {"query": query.used}
    after = None
    self_cursor = None
    if query.page:
        cursor = decode_cursor(query.page)
        if cursor.direction != "next" or cursor.version != 1:
            raise BadRequest(
                "Invalid _page value: AuditEvent pages only forwards; follow the links as "
                "given (R4 http.html#paging).",
                expression="http._page",
            )
        after = (cursor.last_updated_us, cursor.id)
        self_cursor = encode_cursor("next", cursor.last_updated_us, cursor.id, 1)
    rt = runtime(request)
    await audit_log(rt).flush()
    rows = await rt.catalogue.search_audit(
        AuditQuery(
            entity=query.entity,
            since_us=query.since_us,
            until_us=query.until_us,
            after=after,
            limit=query.count + 1 if query.count else 0,
        )
    )
    next_cursor = None
    if len(rows) > query.count:
        rows = rows[: query.count]
        last = rows[-1]
        next_cursor = encode_cursor("next", datetime_to_us(last.recorded), last.id, 1)
    links = page_links(
        rt.base_url,
        "AuditEvent",
        query.used,
        query.count,
        first_cursor=None,
        next_cursor=next_cursor,
        prev_cursor=None,
        self_cursor=self_cursor,
    )
    events = [audit_event(row, server=rt.base_url) for row in rows]
    return _bundle(rt.base_url, events, links, fmt, pretty(request))


def _bundle(
    base_url: str,
    events: list[dict[str, Any]],
    links: list[tuple[str, str]],
    fmt: Representation,
    indent: bool,
) -> Response:
    body: AsyncIterator[bytes]
    if fmt is Representation.FHIR_XML:
        xml_entries = [
            XmlEntry(
                full_url=f"{base_url}/AuditEvent/{event['id']}",
                resource=_once(resource_to_xml(event, indent, declaration=False)),
                search_mode="match",
            )
            for event in events
        ]
        body = bundle_xml_stream(
            bundle_type="searchset", entries=_items(xml_entries), links=links, pretty=indent
        )
    else:
        json_entries = [
            JsonEntry(
                full_url=f"{base_url}/AuditEvent/{event['id']}",
                resource=_once(resource_bytes(event, fmt, indent)),
                search_mode="match",
            )
            for event in events
        ]
        body = bundle_stream(
            bundle_type="searchset",
            total=None,
            links=links,
            entries=_items(json_entries),
            pretty=indent,
        )
    headers = {
        "Content-Type": media_type(fmt),
        # The audit trail is as sensitive as what it describes: never stored by any cache.
        "Cache-Control": "no-store",
        "Vary": "Accept",
        "X-Content-Type-Options": "nosniff",
    }
    return StreamedResponse(status_code=200, headers=headers, body=body)


async def read(request: Request) -> Response:
    """GET [base]/AuditEvent/[id] (R4 http.html#read); AuditEvents have no versions."""
    _require(request, "r")
    record_id = check_id(request.path_params["id"])
    fmt = _format(request)
    rt = runtime(request)
    await audit_log(rt).flush()
    rows = await rt.catalogue.search_audit(AuditQuery(id=record_id, limit=1))
    if not rows:
        raise NotFound(f"AuditEvent/{record_id} is not known to this server.")
    return resource_response(
        audit_event(rows[0], server=rt.base_url),
        fmt,
        pretty=pretty(request),
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _items(items: Sequence[T]) -> AsyncIterator[T]:
    for item in items:
        yield item
