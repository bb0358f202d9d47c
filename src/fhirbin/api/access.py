"""The access a request's token grants (security/access.py), from its RequestContext."""

from __future__ import annotations

from starlette.requests import Request

from fhirbin.api.context import context_of
from fhirbin.auth.tokens import AccessClaims
from fhirbin.errors import Unauthorized
from fhirbin.security.access import Access, grant

__all__ = ["Access", "authorize", "claims_of"]


def claims_of(request: Request) -> AccessClaims:
    """The verified token of a request to a protected endpoint (the auth middleware or the
    fast lane put it in the request's context)."""
    claims = context_of(request.scope).claims
    if claims is None:  # a protected route reached without the auth middleware
        raise Unauthorized("This endpoint needs an access token.", error=None)
    return claims


def authorize(request: Request, action: str) -> Access:
    """The access the request's verified token grants for ``action`` (c r u d s) on Binary;
    a 403 when its scopes grant none (security/access.py)."""
    return grant(claims_of(request), action, request.app.state.runtime.base_url)
