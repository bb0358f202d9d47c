"""The ONE place errors become HTTP responses.

- ``FhirbinError`` → an ``application/fhir+json`` OperationOutcome with the error's status and
  IssueType (R4 operationoutcome.html; http.html "SHOULD return an OperationOutcome" on failure),
  plus its headers (``WWW-Authenticate`` on 401/403, RFC 6750 §3).
- ``OAuthError`` → RFC 6749 §5.2 JSON ``{"error", "error_description"}`` with ``no-store``.
- Starlette's own 404 (no route) and 405 (method) → OperationOutcome too.
- A dependency's fault (faults.py) → 503 with Retry-After when the database or the content store
  cannot be reached, 507 when one of them is full; the operator's detail goes to the log.
- Anything else → a 500 OperationOutcome carrying only an incident id; the traceback goes to the
  log under that id, never to the client (R4 security.html#http).
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import parse_qsl

import structlog
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from fhirbin.api.context import context_of
from fhirbin.errors import (
    FhirbinError,
    InsufficientStorage,
    MethodNotAllowed,
    NotFound,
    OAuthError,
    ServiceUnavailable,
)
from fhirbin.faults import DependencyUnavailable, OutOfSpace
from fhirbin.fhir.negotiate import Representation, fhir_format
from fhirbin.fhir.outcome import operation_outcome
from fhirbin.fhir.xml_write import resource_to_xml

FHIR_JSON = "application/fhir+json; charset=utf-8"
FHIR_XML = "application/fhir+xml; charset=utf-8"
log = structlog.get_logger("fhirbin.api")

# Headers every error carries: errors may quote request data, and are never cached.
_COMMON = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def _wants_xml(scope: Scope | None) -> bool:
    """R4 http.html#summary: any request may choose the format of its OperationOutcome. A
    request whose format cannot be negotiated (the 406 itself) gets JSON."""
    if scope is None or scope.get("type") != "http":
        return False
    query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
    formats = [value for name, value in query if name == "_format"]
    try:
        fmt = fhir_format(formats[-1] if formats else None, Headers(scope=scope).get("accept"))
    except FhirbinError:
        return False
    return fmt is Representation.FHIR_XML


def outcome_response(
    status: int,
    code: str,
    diagnostics: str,
    *,
    expression: str | None = None,
    headers: dict[str, str] | None = None,
    xml: bool = False,
) -> Response:
    body = operation_outcome(code, diagnostics, expression=expression)
    if xml:
        content, media_type = resource_to_xml(body), FHIR_XML
    else:
        content, media_type = json.dumps(body, separators=(",", ":")).encode(), FHIR_JSON
    return Response(
        content,
        status_code=status,
        headers={**_COMMON, **(headers or {})},
        media_type=media_type,
    )


def error_response(exc: Exception, scope: Scope | None = None) -> Response:
    """Render any exception; safe to call from middleware and handlers alike."""
    if scope is not None:
        context_of(scope).refuse(exc)  # the audit record says why (api/audit_records.py)
    if isinstance(exc, OAuthError):
        payload = {"error": exc.error, "error_description": exc.diagnostics}
        return Response(
            json.dumps(payload).encode(),
            status_code=exc.status,
            headers={**exc.headers, "Cache-Control": "no-store", "Pragma": "no-cache"},
            media_type="application/json",
        )
    if isinstance(exc, FhirbinError):
        return outcome_response(
            exc.status,
            exc.code,
            exc.diagnostics,
            expression=exc.expression,
            headers=exc.headers,
            xml=_wants_xml(scope),
        )
    if isinstance(exc, HTTPException):
        return error_response(_from_http_exception(exc), scope)
    if isinstance(exc, DependencyUnavailable | OutOfSpace):
        if scope is not None:
            context_of(scope).fault = exc.dependency  # counted by api/observe.py
        return error_response(_from_fault(exc), scope)
    incident = str(uuid.uuid4())
    log.error("unhandled error", incident=incident, exc_info=exc)
    return outcome_response(
        500,
        "exception",
        f"The server failed to process the request. Incident id {incident}.",
        xml=_wants_xml(scope),
    )


def _from_http_exception(exc: HTTPException) -> FhirbinError:
    """Starlette raises these for unmatched routes (404) and methods (405)."""
    err: FhirbinError
    if exc.status_code == 404:
        err = NotFound("No route matches this URL on this FHIR server.")
    elif exc.status_code == 405:
        err = MethodNotAllowed("This HTTP method is not supported for this URL.")
        if exc.headers and "Allow" in exc.headers:
            err.headers["Allow"] = allow_header(exc.headers["Allow"])
    else:
        err = FhirbinError(str(exc.detail))
        err.status = exc.status_code
        err.code = "processing"
    return err


#: Seconds a client should wait before retrying when a dependency is down.
RETRY_AFTER = 5


def _from_fault(fault: DependencyUnavailable | OutOfSpace) -> FhirbinError:
    """Clients learn which dependency failed, never its address or credentials; the operator's
    detail goes to the log (docs/operations.md, "Faults")."""
    if isinstance(fault, OutOfSpace):
        log.error("out of space", dependency=fault.dependency, detail=fault.detail)
        return InsufficientStorage(
            f"The {fault.dependency} is full; nothing of this request was stored."
        )
    log.warning("dependency unavailable", dependency=fault.dependency, detail=fault.detail)
    return ServiceUnavailable(
        f"The {fault.dependency} cannot be reached; try again shortly.", retry_after=RETRY_AFTER
    )


_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "DELETE")


def allow_header(methods: str) -> str:
    """Starlette's ``Allow`` (a set, in no order) in a stable order: GET, HEAD, POST, PUT,
    DELETE, then anything else alphabetically."""
    names = {m.strip().upper() for m in methods.split(",") if m.strip()}
    known = [m for m in _METHOD_ORDER if m in names]
    return ", ".join(known + sorted(names - set(known)))


async def _handle(request: Request, exc: Exception) -> Response:
    return error_response(exc, request.scope)


def exception_handlers() -> dict[Any, Any]:
    """For ``Starlette(exception_handlers=...)``."""
    return {
        Exception: _handle,
        HTTPException: _handle,
        FhirbinError: _handle,
        DependencyUnavailable: _handle,
        OutOfSpace: _handle,
    }
