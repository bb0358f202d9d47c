"""The audit trail read back: ``GET [base]/AuditEvent`` and ``GET [base]/AuditEvent/[id]``.

For tokens holding ``system/AuditEvent.rs`` (SMART scopes; note that ``system/*.rs`` covers
AuditEvent too), answering BALP-shaped AuditEvents in JSON or XML (``fhir/audit.py``), never
cached (``Cache-Control: no-store``: the trail is as sensitive as what it describes). Both
flush the node's buffered records first (auditlog.py), so a node reads its own records.
Reading the audit is itself audited (docs/security.md#audit).
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from fhirbin.api.access import claims_of
from fhirbin.api.context import context_of
from fhirbin.api.render import Entry, bundle_response, pretty, resource_response
from fhirbin.api.requests import runtime
from fhirbin.auth.scopes import allows, needed_scope
from fhirbin.errors import BadRequest, Forbidden, NotFound
from fhirbin.fhir.audit import audit_event, parse_audit_search
from fhirbin.fhir.dates import datetime_to_us
from fhirbin.fhir.ids import check_id
from fhirbin.fhir.negotiate import Representation, fhir_format
from fhirbin.fhir.paging import decode_cursor, encode_cursor, page_links
from fhirbin.fhir.prefer import prefer_handling
from fhirbin.metadata.base import AuditQuery

__all__ = ["read", "search"]

_DEFAULT_COUNT = 20
_MAX_COUNT = 1000
_ACTION_NAMES = {"r": "read", "s": "search"}
#: The audit trail is as sensitive as what it describes: never stored by any cache.
_NO_STORE = "no-store"


def _require(request: Request, action: str) -> None:
    """SMART scopes: reading the audit trail needs system/AuditEvent.r / .s (or system/*)."""
    if not allows(claims_of(request).scope, action, resource="AuditEvent"):
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
    context_of(request.scope).query = query.used
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
    await rt.audit.flush()
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
    entries = [
        Entry(
            f"{rt.base_url}/AuditEvent/{row.id}",
            None,
            search_mode="match",
            resource=audit_event(row, server=rt.base_url),
        )
        for row in rows
    ]
    return bundle_response(
        rt.service,
        bundle_type="searchset",
        total=None,
        links=links,
        entries=entries,
        fmt=fmt,
        pretty=pretty(request),
        cache_control=_NO_STORE,
    )


async def read(request: Request) -> Response:
    """GET [base]/AuditEvent/[id] (R4 http.html#read); AuditEvents have no versions."""
    _require(request, "r")
    record_id = check_id(request.path_params["id"])
    fmt = _format(request)
    rt = runtime(request)
    await rt.audit.flush()
    rows = await rt.catalogue.search_audit(AuditQuery(id=record_id, limit=1))
    if not rows:
        raise NotFound(f"AuditEvent/{record_id} is not known to this server.")
    return resource_response(
        audit_event(rows[0], server=rt.base_url),
        fmt,
        pretty=pretty(request),
        headers={"Cache-Control": _NO_STORE, "X-Content-Type-Options": "nosniff"},
    )
