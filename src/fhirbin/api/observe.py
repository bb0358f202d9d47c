"""What an operator and an auditor see of each request: request id, metrics, access line, audit.

:class:`ObserveMiddleware` is the outermost layer (docs/operations.md), so it sees every
request, including those the fast lane (api/fastlane.py), CORS or the auth middleware
answer themselves. It wraps ``send`` once per request and, for each request:

* makes the request's :class:`~fhirbin.api.context.RequestContext` (api/context.py) and leaves
  it in the scope for every later layer; its request id is ``X-Request-Id`` when sent and
  well-formed, else a new one, and goes out on every response;
* classifies the FHIR interaction once (``fhir.audit.classify``, the audit trail's own
  classification), remembered per method and path;
* counts it in the runtime's :class:`~fhirbin.metrics.Metrics`: requests by interaction and
  status, duration, body bytes in and out, uploads in flight, and the dependency a 503/507
  blamed (the audit backlog is sampled every second by the app's lifespan);
* writes one access line (structlog, logger ``fhirbin.access``): request id, client id (the
  token's, or the client the token endpoint authenticated), method, path (never the query
  string, which may hold a refused ``access_token`` or search values), interaction, status,
  bytes, duration. Never a token, a header or content;
* hands the finished request (its context, peer address, status, bytes sent, the type of the
  exception that ended it) to the runtime's AuditLog (auditlog.py), which builds its
  AuditEvent record (api/audit_records.py) in its background flush, off the request path
  (docs/security.md#audit). Audited: every request under the FHIR base except the public
  discovery endpoints (the CapabilityStatement and ``.well-known/*``, which reveal nobody's
  data) and CORS preflights (``OPTIONS``); the token endpoint is (subtype ``login``). A
  successful write stored its own record in its transaction and is skipped by the builder.

The probes (``/healthz``, ``/readyz``) and ``/metrics`` are not counted, and their access
lines are at debug level: a scraper every few seconds would drown the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhirbin.api.audit_records import Finished, peer, request_record
from fhirbin.api.context import CONTEXT_KEY, RequestContext, request_id_of
from fhirbin.api.middleware import FHIR_PREFIX
from fhirbin.fhir.audit import Interaction, classify

if TYPE_CHECKING:
    from fhirbin.runtime import Runtime

__all__ = ["OPERATE_PATHS", "ObserveMiddleware", "interaction_of"]

#: The operator's endpoints, outside the FHIR base.
OPERATE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

_CAPABILITIES = Interaction("E", "capabilities")
_DISCOVERY = Interaction("E", "discovery")
_OUTSIDE = Interaction("E", "none")
_UPLOADS = frozenset({"create", "update"})
_BODIES = frozenset({"POST", "PUT", "PATCH"})
_MAX_REMEMBERED = 10_000

access = structlog.get_logger("fhirbin.access")


def interaction_of(method: str, path: str) -> Interaction:
    """The FHIR interaction code of a request (R4 valueset-restful-interaction where one
    applies: ``read``, ``vread``, ``search-type``, ``create``, ``capabilities`` ...)."""
    if path != FHIR_PREFIX and not path.startswith(FHIR_PREFIX + "/"):
        return _OUTSIDE
    relative = path[len(FHIR_PREFIX) :]
    if relative == "/metadata":
        return _CAPABILITIES
    if relative.startswith("/.well-known/"):
        return _DISCOVERY
    return classify(method, relative)


class ObserveMiddleware:
    """See the module docstring; ``runtime`` is the process's (its metrics and audit log)."""

    def __init__(self, app: ASGIApp, *, runtime: Callable[[], Runtime]) -> None:
        self.app = app
        self.runtime = runtime
        # (method, path) -> (its interaction, whether it is audited): pure, so never stale;
        # bounded like api/fastlane.py.
        self._interactions: dict[tuple[str, str], tuple[Interaction, bool]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rt = self.runtime()
        audit = rt.audit
        ctx = scope[CONTEXT_KEY] = RequestContext(request_id_of(scope, audit.ids), time.time())
        id_header = (b"x-request-id", ctx.request_id.encode("latin-1"))
        method: str = scope["method"]
        path: str = scope["path"]
        known = self._interactions.get((method, path))
        if known is None:
            if len(self._interactions) >= _MAX_REMEMBERED:
                self._interactions.clear()
            interaction = interaction_of(method, path)
            # Not audited: CORS preflights (any OPTIONS), anything outside the FHIR base, and
            # the public discovery endpoints (docs/decisions.md#public-endpoints).
            public = interaction is _OUTSIDE or interaction is _CAPABILITIES
            public = public or interaction is _DISCOVERY or method == "OPTIONS"
            known = (interaction, not public)
            self._interactions[method, path] = known
        interaction, audited = known
        ctx.interaction = interaction
        code = interaction.subtype
        status = 0
        sent = 0
        received = 0
        headers: list[tuple[bytes, bytes]] = []

        async def observed_send(message: Message) -> None:
            nonlocal status, sent, headers
            kind = message["type"]
            if kind == "http.response.body":
                sent += len(message.get("body", b""))
            elif kind == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), id_header]
                message = {**message, "headers": headers}
            elif kind == "http.response.pathsend":
                sent += _content_length(headers)  # the whole file goes out
            await send(message)

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            return message

        metrics = rt.metrics
        upload = code in _UPLOADS
        if upload:
            metrics.uploads.inc()
        failure: type[BaseException] | None = None
        try:
            await self.app(scope, counted_receive if method in _BODIES else receive, observed_send)
        except BaseException as exc:
            failure = type(exc)
            raise
        finally:
            if audited:
                audit.defer(request_record, Finished(ctx, peer(scope), status, sent, failure))
            if upload:
                metrics.uploads.dec()
            if not status:  # nothing went out: the client left, or the error handler answers
                cancelled = failure is not None and issubclass(failure, asyncio.CancelledError)
                status = 499 if cancelled else 500  # as the audit record says
            seconds = time.perf_counter() - started
            operate = path in OPERATE_PATHS
            if ctx.interaction is not None:  # a handler may know better (a signed URL's vread)
                code = ctx.interaction.subtype
            if not operate:
                metrics.request(code, status, seconds, received, sent)
                if ctx.fault is not None:
                    metrics.dependency_error(ctx.fault)
            _access_line(scope, operate, ctx, code, status, received, sent, seconds)


def _content_length(headers: list[tuple[bytes, bytes]]) -> int:
    for name, value in headers:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return 0


def _access_line(
    scope: Scope,
    operate: bool,
    ctx: RequestContext,
    interaction: str,
    status: int,
    received: int,
    sent: int,
    seconds: float,
) -> None:
    (access.debug if operate else access.info)(
        "request",
        request_id=ctx.request_id,
        client_id=ctx.who,  # the token's client, or the one the token endpoint authenticated
        method=scope["method"],
        path=scope["path"],
        interaction=interaction,
        status=status,
        bytes_in=received,
        bytes_out=sent,
        duration_ms=round(seconds * 1000, 3),
    )
