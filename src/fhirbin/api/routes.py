"""Every route, one line per path.

Each path is one route carrying every method it supports, so a 405 names them all in ``Allow``
(RFC 9110 §15.5.6; a route per method would let the first one answer for the path). Starlette
tries routes in order, so the two fixed ``/Binary/_…`` paths come before the ``{id}`` pattern
that would otherwise swallow them. The last route, :class:`Fallback`, takes every request no
other route matches: unknown paths under ``/Binary/`` are refused, and a path that differs from
a route only by a trailing slash is redirected to the public base URL, never to the ``Host``
the request named (docs/decisions.md#no-host-echo).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Receive, Scope, Send

from fhirbin.api import auditevents, discovery, operate, reads, searches, signed, writes
from fhirbin.api.requests import runtime

Handler = Callable[[Request], Awaitable[Response]]

#: The prefix every route lives under; the public base URL stands for it in redirects.
FHIR_PREFIX = "/fhir"


def route(path: str, **handlers: Handler) -> Route:
    """One route for ``path``; ``handlers`` maps each method (``GET``, ``POST``...) to its
    handler. ``GET`` brings ``HEAD`` with it, as Starlette does."""
    table = {method.upper(): handler for method, handler in handlers.items()}
    if "GET" in table:
        table.setdefault("HEAD", table["GET"])

    async def dispatch(request: Request) -> Response:
        return await table[request.method](request)

    dispatch.__name__ = "_".join(h.__name__ for h in handlers.values())
    return Route(path, dispatch, methods=list(table))


def routes() -> list[BaseRoute]:
    table: list[BaseRoute] = [
        route("/fhir/Binary/_search", POST=searches.search),
        route("/fhir/Binary/_history", GET=searches.history),
        route("/fhir/Binary/{id}", GET=reads.read, PUT=writes.update, DELETE=writes.delete),
        route("/fhir/metadata", GET=discovery.metadata),
        route("/fhir/.well-known/smart-configuration", GET=discovery.smart_configuration),
        route("/fhir/.well-known/jwks.json", GET=discovery.jwks),
        route("/fhir/auth/token", POST=discovery.token),
        route("/fhir/Binary", GET=searches.search, POST=writes.create),
        route("/fhir/Binary/", GET=searches.search, POST=writes.create),
        route("/fhir/Binary/{id}/_history", GET=searches.history),
        route("/fhir/Binary/{id}/_history/{vid}", GET=reads.vread),
        route("/fhir/Binary/{id}/$expunge", POST=writes.expunge),
        route("/fhir/Binary/{id}/$signed-url", GET=signed.signed_url),
        route("/fhir/Binary/{id}/_history/{vid}/$signed-url", GET=signed.signed_url_of_version),
        route("/fhir/Binary/{id}/_history/{vid}/$signed-content", GET=signed.signed_content),
        route("/fhir/AuditEvent", GET=auditevents.search),
        route("/fhir/AuditEvent/{id}", GET=auditevents.read),
        route("/healthz", GET=operate.healthz),
        route("/readyz", GET=operate.readyz),
        route("/metrics", GET=operate.metrics),
    ]
    return [*table, Fallback(table)]


class Fallback(BaseRoute):
    """Whatever no route matches, for any method (so it never hides a 405)."""

    def __init__(self, others: Sequence[BaseRoute]) -> None:
        self.others = list(others)

    def _matched(self, scope: Scope) -> bool:
        return any(other.matches(scope)[0] is not Match.NONE for other in self.others)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and not self._matched(scope):
            return Match.FULL, {}
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        path = get_route_path(scope)
        if path.startswith(f"{FHIR_PREFIX}/Binary/"):
            response = await reads.unrouted(request)
        else:
            response = self._redirect(request, path)
        await response(scope, receive, send)

    def _redirect(self, request: Request, path: str) -> Response:
        """307 to the same path with the trailing slash toggled, if a route has that path;
        the location is built on the configured public base URL, never on ``Host``."""
        other = path[:-1] if path.endswith("/") else path + "/"
        if other in ("", FHIR_PREFIX + "/") or not self._matched({**request.scope, "path": other}):
            return reads.not_routed()
        base = runtime(request).base_url
        if other == FHIR_PREFIX or other.startswith(FHIR_PREFIX + "/"):
            location = base + other[len(FHIR_PREFIX) :]
        else:
            location = _origin(base) + other
        query = request.scope.get("query_string", b"").decode("latin-1")
        if query:
            location += "?" + query
        return RedirectResponse(location, status_code=307)


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"
