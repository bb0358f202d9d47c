"""read and vread through Starlette's router; every decision is api/reading.py's.

The fast lane (api/fastlane.py) answers most reads before the router sees them; what reaches
these handlers (a token not yet verified on this node, an error to render) is decided by the
same functions.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from fhirbin.api.access import authorize
from fhirbin.api.context import context_of
from fhirbin.api.reading import ask_of, read_binary, vread_binary
from fhirbin.api.requests import runtime
from fhirbin.errors import BadRequest, NotFound


async def read(request: Request) -> Response:
    """GET/HEAD [base]/Binary/[id] — R4 binary.html#rest, http.html#read,
    docs/decisions.md#read-representation, #other-accept-types-get-the-content."""
    access = authorize(request, "r")
    scope = request.scope
    return await read_binary(
        runtime(request), access, ask_of(scope), request.path_params["id"], context_of(scope)
    )


async def vread(request: Request) -> Response:
    """GET/HEAD [base]/Binary/[id]/_history/[vid] — R4 http.html#vread."""
    access = authorize(request, "r")
    scope = request.scope
    params = request.path_params
    return await vread_binary(
        runtime(request), access, ask_of(scope), params["id"], params["vid"], context_of(scope)
    )


async def unrouted(request: Request) -> Response:
    """Paths under /Binary/ that are no route; a %2F inside an id is a malformed id
    (docs/decisions.md#malformed-ids)."""
    raw: bytes = request.scope.get("raw_path") or request.url.path.encode()
    tail = raw.split(b"/Binary/", 1)[-1]
    if b"%2f" in tail.lower():
        raise BadRequest("A Binary id may not contain '/' (%2F).", expression="id")
    return not_routed()


def not_routed() -> Response:
    """No route matches (raised, so that api/errors.py renders it)."""
    raise NotFound("No route matches this URL on this FHIR server.")
