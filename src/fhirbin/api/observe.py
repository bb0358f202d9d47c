"""What an operator sees of each request: the request id, the metrics and the access line.

:class:`ObserveMiddleware` is the outermost layer (docs/operations.md), so it sees every
request, including those the one-step read lane (api/hotread.py), CORS or the auth middleware
answer themselves. For each request it:

* settles the request id: ``X-Request-Id`` when sent and well-formed (the audit trail's rule,
  api/audit.py), else a new one; it goes in ``scope`` for the audit record and the logs, and
  out on every response;
* classifies the FHIR interaction once (``fhir.audit.classify``, the audit trail's own
  classification, left in ``scope`` for the audit middleware);
* counts it in the runtime's :class:`~fhirbin.metrics.Metrics`: requests by interaction and
  status, duration, body bytes in and out, uploads in flight, and the dependency a 503/507
  blamed (the audit backlog is sampled every second by the app's lifespan);
* writes one access line (structlog, logger ``fhirbin.access``): request id, client id,
  method, path (never the query string, which may hold a refused ``access_token`` or search
  values), interaction, status, bytes, duration. Never a token, a header or content.

The probes (``/healthz``, ``/readyz``) and ``/metrics`` are not counted, and their access
lines are at debug level: a scraper every few seconds would drown the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhirbin.api.audit import AUDIT_KEY, FAULT_KEY, INTERACTION_KEY, REQUEST_ID_KEY
from fhirbin.api.middleware import CLAIMS_KEY, FHIR_PREFIX
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
    """See the module docstring; ``request_id`` makes a new id, ``runtime`` is the process's."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        runtime: Callable[[], Runtime],
        request_id: Callable[[Scope], str],
    ) -> None:
        self.app = app
        self.runtime = runtime
        self.request_id = request_id
        # (method, path) -> its interaction: pure, so never stale; bounded like api/hotread.py.
        self._interactions: dict[tuple[str, str], Interaction] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = scope[REQUEST_ID_KEY] = self.request_id(scope)
        id_header = (b"x-request-id", request_id.encode("latin-1"))
        method: str = scope["method"]
        path: str = scope["path"]
        interaction = self._interactions.get((method, path))
        if interaction is None:
            if len(self._interactions) >= _MAX_REMEMBERED:
                self._interactions.clear()
            interaction = self._interactions[method, path] = interaction_of(method, path)
        scope[INTERACTION_KEY] = interaction
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

        rt = self.runtime()
        metrics = rt.metrics
        upload = code in _UPLOADS
        if upload:
            metrics.uploads.inc()
        try:
            await self.app(scope, counted_receive if method in _BODIES else receive, observed_send)
        except asyncio.CancelledError:
            status = status or 499  # the client left (as the audit record says)
            raise
        finally:
            if upload:
                metrics.uploads.dec()
            status = status or 500  # nothing went out: the server's error handler answers
            seconds = time.perf_counter() - started
            operate = path in OPERATE_PATHS
            if not operate:
                metrics.request(code, status, seconds, received, sent)
                fault = scope.get(FAULT_KEY)
                if fault is not None:
                    metrics.dependency_error(fault)
            _access_line(scope, operate, request_id, code, status, received, sent, seconds)


def _content_length(headers: list[tuple[bytes, bytes]]) -> int:
    for name, value in headers:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return 0


def _access_line(
    scope: Scope,
    operate: bool,
    request_id: str,
    interaction: str,
    status: int,
    received: int,
    sent: int,
    seconds: float,
) -> None:
    claims: Any = scope.get(CLAIMS_KEY)
    if claims is not None:
        client_id = claims.client_id
    else:  # the token endpoint names the client it authenticated
        client_id = (scope.get(AUDIT_KEY) or {}).get("client_id")
    (access.debug if operate else access.info)(
        "request",
        request_id=request_id,
        client_id=client_id,
        method=scope["method"],
        path=scope["path"],
        interaction=interaction,
        status=status,
        bytes_in=received,
        bytes_out=sent,
        duration_ms=round(seconds * 1000, 3),
    )
