"""Bearer-token authentication for every FHIR endpoint but the public ones.

A pure ASGI middleware, so a request costs no extra framework layer. It verifies the JWT (no
database read: the verifier caches by token hash), checks the client has not been revoked (a
per-node cache refreshed every ``revocation_check_interval`` seconds), and leaves the claims in
the ASGI scope for the handlers' scope checks. Refusals follow RFC 6750 §3: no credentials →
401 without an error code; a bad token → 401 ``invalid_token``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from fhirbin.auth.tokens import AccessClaims
from fhirbin.errors import BadRequest, FhirbinError, Unauthorized
from fhirbin.identity.authenticator import Authenticator

CLAIMS_KEY = "fhirbin.claims"
FHIR_PREFIX = "/fhir"

#: R4 has no rule for these; docs/decisions.md#public-endpoints: discovery, capabilities and
#: the OAuth endpoints are public (SMART conformance.html#using-well-known needs them before
#: any token exists).
PUBLIC_PATHS = frozenset(
    {
        "/fhir/metadata",
        "/fhir/.well-known/smart-configuration",
        "/fhir/.well-known/jwks.json",
        "/fhir/auth/token",
    }
)


class ClientStatusCache:
    """Whether a client is still active, re-read from the catalogue at most every ``ttl`` s.

    Single-flight: when an entry expires under load, one lookup runs and every request for that
    client awaits it, instead of each starting its own query (which queued 64 connections'
    worth of queries behind the pool every ``ttl`` seconds: the read path's p99).
    """

    def __init__(self, lookup: Callable[[str], Awaitable[bool]], ttl: float) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._seen: dict[str, tuple[bool, float]] = {}
        self._pending: dict[str, asyncio.Future[bool]] = {}

    def fresh(self, client_id: str) -> bool | None:
        """What is known of the client, if it was looked up less than ``ttl`` s ago."""
        hit = self._seen.get(client_id)
        if hit is not None and time.monotonic() - hit[1] < self._ttl:
            return hit[0]
        return None

    async def is_active(self, client_id: str) -> bool:
        known = self.fresh(client_id)
        if known is not None:
            return known
        pending = self._pending.get(client_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending[client_id] = future
        try:
            active = await self._lookup(client_id)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs it as lost
            raise
        finally:
            del self._pending[client_id]
        future.set_result(active)
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[client_id] = (active, time.monotonic())
        return active


class AuthMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticator: Callable[[], Authenticator],
        clients: Callable[[], ClientStatusCache],
        audience: str,
        render: Callable[[Exception, Scope], ASGIApp],
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.clients = clients
        self.audience = audience
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            _refuse_query_token(scope)
            path: str = scope["path"]
            if _protected(path):
                scope[CLAIMS_KEY] = await self._authenticate(scope)
        except FhirbinError as exc:
            await self.render(exc, scope)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _authenticate(self, scope: Scope) -> AccessClaims:
        header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if header is not None:
                    raise BadRequest("More than one Authorization header.")
                header = value.decode("latin-1")
        if header is None:
            raise Unauthorized(
                "This endpoint needs an access token: send Authorization: Bearer <token>.",
                error=None,
            )
        scheme, _, token = header.strip().partition(" ")
        # RFC 9110 §11.1: the auth scheme is case-insensitive ("bearer" is fine).
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("The Authorization header must be 'Bearer <access token>'.")
        claims = await self.authenticator().authenticate(token.strip(), self.audience)
        # Revocation is fhirbin's own business only for the clients it registered (tokens it
        # issued, whose issuer is its base URL); an external provider revokes its own.
        own = claims.issuer == self.audience
        if own and not await self.clients().is_active(claims.client_id):
            raise Unauthorized("The client this token was issued to has been revoked.")
        return claims


def _protected(path: str) -> bool:
    if path != FHIR_PREFIX and not path.startswith(FHIR_PREFIX + "/"):
        return False
    return path not in PUBLIC_PATHS


def _refuse_query_token(scope: Scope) -> None:
    """docs/decisions.md#no-tokens-in-urls (RFC 6750 §2.3 discourages it): tokens in URLs end
    up in logs; refuse them."""
    query: bytes = scope.get("query_string", b"")
    if b"access_token" not in query:
        return
    names = {name for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True)}
    if "access_token" in names:
        exc = BadRequest(
            "Access tokens are not accepted in the URL; send Authorization: Bearer <token>.",
            expression="http.access_token",
            code="security",
        )
        exc.headers["WWW-Authenticate"] = 'Bearer realm="fhirbin", error="invalid_request"'
        raise exc
