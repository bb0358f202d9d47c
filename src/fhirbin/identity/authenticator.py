"""Turns a bearer token into verified claims, whoever issued it."""

from __future__ import annotations

from fhirbin.auth.tokens import AccessClaims, TokenVerifier
from fhirbin.config import Settings


class Authenticator:
    """fhirbin's own tokens only (external issuers and introspection: issue 4)."""

    def __init__(self, own: TokenVerifier) -> None:
        self.own = own

    async def authenticate(self, token: str, audience: str) -> AccessClaims:
        return self.own.verify(token, audience)

    async def close(self) -> None:
        return None


def build_authenticator(settings: Settings, own: TokenVerifier) -> Authenticator:
    return Authenticator(own)
