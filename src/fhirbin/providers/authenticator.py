"""Turns a bearer token into verified claims, whoever issued it.

Which verifier a token goes to (the token's unverified ``iss`` only routes it; each verifier
checks ``iss`` again on the verified token):

1. longer than 8 KiB: refused, whoever issued it;
2. a JWT whose ``iss`` is fhirbin's own: fhirbin's own verifier (always first, so an external
   configuration can never shadow fhirbin's tokens);
3. a JWT whose ``iss`` is ``FHIRBIN_EXTERNAL_ISSUER``: verified against the issuer's JWK Set;
4. anything else (an opaque token, or a JWT of another issuer) when
   ``FHIRBIN_INTROSPECTION_URL`` is set: RFC 7662 introspection;
5. otherwise fhirbin's own verifier, which refuses it with the reason.

External tokens must carry ``FHIRBIN_AUDIENCE`` (default: the FHIR base URL). The same object
authenticates client assertions at the token endpoint (``assertions``), sharing the HTTP client.
"""

from __future__ import annotations

import httpx

from fhirbin.auth.jose import peek
from fhirbin.auth.tokens import MAX_TOKEN_LENGTH, AccessClaims, TokenVerifier
from fhirbin.errors import Unauthorized
from fhirbin.providers.assertion_verifier import ClientAssertions
from fhirbin.providers.external_idp import ExternalTokens
from fhirbin.providers.introspection import Introspector

__all__ = ["Authenticator"]


class Authenticator:
    """fhirbin's own tokens, an external issuer's JWTs, introspected opaque tokens."""

    def __init__(
        self,
        own: TokenVerifier,
        *,
        assertions: ClientAssertions,
        http: httpx.AsyncClient,
        external: ExternalTokens | None = None,
        introspection: Introspector | None = None,
        audience: str = "",
    ) -> None:
        self.own = own
        self.assertions = assertions
        self.external = external
        self.introspection = introspection
        self._audience = audience
        self._http = http

    async def authenticate(self, token: str, audience: str) -> AccessClaims:
        """Verified claims for ``token`` at this server (``audience``: the FHIR base URL)."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise Unauthorized(f"The access token is too long (over {MAX_TOKEN_LENGTH} characters)")
        if self.own.knows(token):  # a hot token of our own: no need to decode it to route it
            return self.own.verify(token, audience)
        jws = peek(token)
        issuer = None if jws is None else jws.issuer
        if issuer is not None and issuer == self.own.issuer:
            return self.own.verify(token, audience)
        external_audience = self._audience or audience
        if jws is not None and self.external is not None and issuer == self.external.issuer:
            return await self.external.verify(token, jws, external_audience)
        if self.introspection is not None:
            return await self.introspection.introspect(token, external_audience)
        return self.own.verify(token, audience)

    async def close(self) -> None:
        await self._http.aclose()
