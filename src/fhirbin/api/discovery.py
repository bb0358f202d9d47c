"""The public endpoints (docs/decisions.md#public-endpoints): CapabilityStatement, SMART
configuration, JWKS, tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from fhirbin import __version__
from fhirbin.api.context import context_of
from fhirbin.api.render import pretty, resource_response
from fhirbin.api.requests import parse_form, read_body, runtime
from fhirbin.api.responses import json_response
from fhirbin.auth.assertions import ASSERTION_ALGS, is_assertion_request
from fhirbin.auth.clients import check_token_request, parse_client_credentials, verify_secret
from fhirbin.auth.scopes import SUPPORTED_SCOPES, grant
from fhirbin.errors import FhirbinError, OAuthError
from fhirbin.fhir.audit import AUDIT_INTERACTIONS, AUDIT_SEARCH_PARAMS
from fhirbin.fhir.capability import capability_statement
from fhirbin.fhir.negotiate import fhir_format, media_type_essence
from fhirbin.metadata.base import Client
from fhirbin.providers.assertion_verifier import is_key_client

if TYPE_CHECKING:
    from fhirbin.runtime import Runtime

#: When this CapabilityStatement last changed (R4 capabilitystatement.html: date is 1..1).
CAPABILITY_DATE = "2026-11-26"
#: What the Binary endpoint really does today; the statement lists exactly this.
INTERACTIONS = (
    "read",
    "vread",
    "update",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
SEARCH_PARAMS = (
    ("_id", "token", "Logical id; exact and case-sensitive, comma-separated = OR."),
    ("_lastUpdated", "date", "All prefixes (eq ne gt lt ge le sa eb ap), partial dates; no OR."),
)
FORMATS = ("application/fhir+json", "json", "application/fhir+xml", "xml")


async def metadata(request: Request) -> Response:
    """GET [base]/metadata (R4 http.html#capabilities): public, always FHIR."""
    fmt = fhir_format(request.query_params.get("_format"), request.headers.get("accept"))
    statement = capability_statement(
        base_url=runtime(request).base_url,
        software_version=__version__,
        date=CAPABILITY_DATE,
        formats=FORMATS,
        interactions=INTERACTIONS,
        search_params=SEARCH_PARAMS,
        versioning="versioned-update",
        read_history=True,
        update_create=True,
        conditional_read="full-support",
        other_resources=[("AuditEvent", AUDIT_INTERACTIONS, AUDIT_SEARCH_PARAMS)],
        # fhirbin has a token endpoint and no authorization endpoint (backend services only).
        token_url=f"{runtime(request).base_url}/auth/token",
    )
    return resource_response(
        statement, fmt, pretty=pretty(request), headers={"Cache-Control": "no-cache"}
    )


async def smart_configuration(request: Request) -> Response:
    """SMART App Launch 2.2 conformance.html#using-well-known: always JSON, absolute URLs."""
    base = runtime(request).base_url
    document = {
        "token_endpoint": f"{base}/auth/token",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ],
        # SMART client-confidential-asymmetric.html#discovery-requirements: RS384 and/or ES384.
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "scopes_supported": list(SUPPORTED_SCOPES),
        "response_types_supported": ["token"],
        "capabilities": [
            "client-confidential-symmetric",
            "client-confidential-asymmetric",
            "permission-v2",
            "permission-v1",
        ],
        # REQUIRED by SMART 2.2 even for a server without authorization_code (MUST list S256).
        "code_challenge_methods_supported": ["S256"],
    }
    return json_response(document, media_type="application/json")


async def jwks(request: Request) -> Response:
    """The public keys that verify fhirbin's access tokens (RFC 7517 JWK Set)."""
    return json_response(
        runtime(request).keys.jwks(),
        media_type="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )


async def token(request: Request) -> Response:
    """OAuth2 client_credentials (RFC 6749 §4.4).

    The client authenticates with client_secret_basic / client_secret_post (RFC 6749 §2.3.1) or,
    if it registered keys, with private_key_jwt (RFC 7523 §3, SMART Backend Services
    client-confidential-asymmetric); each client only with the method it registered for.
    """
    rt = runtime(request)
    if media_type_essence(request.headers.get("content-type", "")) != (
        "application/x-www-form-urlencoded"
    ):
        raise OAuthError("invalid_request", "The token request must be form-encoded.")
    try:
        pairs = parse_form(await read_body(request, 64 * 1024))
    except FhirbinError as exc:
        raise OAuthError("invalid_request", exc.diagnostics) from exc
    form = dict(pairs)
    if len(form) != len(pairs):  # RFC 6749 §3.2: parameters MUST NOT repeat
        raise OAuthError("invalid_request", "A token request parameter was sent more than once.")
    requested = check_token_request(form)
    authorization = request.headers.get("authorization")
    if is_assertion_request(form):
        client = await rt.authenticator.assertions.authenticate(
            authorization, form, rt.catalogue, token_endpoint=f"{rt.base_url}/auth/token"
        )
    else:
        client = await _secret_client(rt, authorization, form)
    # No token yet: the access line and the audit record name the client authenticated.
    context_of(request.scope).client_id = client.client_id
    granted = grant(requested, client.scope)
    if not granted:
        raise OAuthError(
            "invalid_scope", "None of the requested scopes can be granted to this client."
        )
    ttl = rt.settings.access_token_ttl
    access_token = rt.issuer.issue(
        audience=rt.base_url, client_id=client.client_id, scope=granted, ttl=ttl
    )
    payload = {
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": ttl,
        "scope": granted,
    }
    return json_response(
        payload,
        media_type="application/json",
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


async def _secret_client(rt: Runtime, authorization: str | None, form: dict[str, str]) -> Client:
    """The client a client_secret_basic / client_secret_post request authenticates."""
    credentials = parse_client_credentials(authorization, form)
    client = await rt.catalogue.get_client(credentials.client_id)
    usable = client is not None and client.active and not is_key_client(client)
    known = client.secret_hash if client is not None and usable else None
    # argon2 is deliberately slow: keep it off the event loop. Unknown, revoked and key clients
    # cost a full verification too, so timing does not tell them apart.
    valid = await anyio.to_thread.run_sync(verify_secret, known, credentials.client_secret)
    if client is not None and client.active and is_key_client(client):
        raise OAuthError(
            "invalid_client",
            "This client is registered with keys: authenticate with private_key_jwt "
            "(a signed client_assertion), not a client secret.",
            status=401,
        )
    if client is None or not valid:
        raise OAuthError("invalid_client", "Client authentication failed.", status=401)
    return client
