"""The access a request's token grants (security/access.py), from its RequestContext."""

from __future__ import annotations

from starlette.requests import Request

from fhirbin.api.context import context_of
from fhirbin.security.access import Access, grant

__all__ = ["Access", "authorize"]


def authorize(request: Request, action: str) -> Access:
    """The access the request's verified token grants for ``action`` (c r u d s) on Binary;
    a 403 when its scopes grant none (security/access.py)."""
    claims = context_of(request.scope).claims
    assert claims is not None, "AuthMiddleware lets no request without a token through"
    return grant(claims, action, request.app.state.runtime.base_url)
