"""Bearer-token authentication for every FHIR endpoint but the public ones.

A pure ASGI middleware, so a request costs no extra framework layer. It verifies the JWT (no
database read: the verifier caches by token hash), checks the client has not been revoked (a
per-node cache refreshed every ``revocation_check_interval`` seconds), and leaves the claims in
the request's context (api/context.py) for the handlers' scope checks. Refusals follow RFC 6750
§3: no credentials → 401 without an error code; a bad token → 401 ``invalid_token``.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from fhirbin.api.context import context_of
from fhirbin.auth.revocation import ClientStatusCache
from fhirbin.auth.signed_urls import is_content_path
from fhirbin.auth.tokens import AccessClaims
from fhirbin.errors import BadRequest, FhirbinError, Unauthorized
from fhirbin.faults import DependencyUnavailable, OutOfSpace
from fhirbin.providers.authenticator import Authenticator

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
            refuse_query_token(scope)
            path: str = scope["path"]
            if _protected(path):
                context_of(scope).claims = await self._authenticate(scope)
        except (FhirbinError, DependencyUnavailable, OutOfSpace) as exc:
            # Rendered here: past this middleware Starlette's outer error handler would answer
            # and then re-raise it to the server as if it were a crash.
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
    # A signed URL carries its own permission, checked by its handler (api/signed.py).
    return path not in PUBLIC_PATHS and not is_content_path(path[len(FHIR_PREFIX) :])


def refuse_query_token(scope: Scope) -> None:
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
