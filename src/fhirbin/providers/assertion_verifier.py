"""private_key_jwt at the token endpoint: find the client's key, verify, refuse replays.

The checks themselves are pure (``fhirbin.auth.assertions``); this module does the I/O around
them, in the order SMART client-confidential-asymmetric.html "signature verification" gives:

1. the assertion's shape and header (before anything is looked up);
2. the client named by ``iss``: registered, not revoked, registered with keys (a client
   registered with a secret cannot use an assertion, nor a key client a secret);
3. the key: a ``jku`` header must equal the client's registered JWKS URL; the keys come from the
   registered JWK Set by value, or fetched from the registered URL (``JwksCache``: cached per its
   Cache-Control, refetched once a minute at most for an unknown kid); exactly one key whose
   ``kid`` matches and whose ``kty`` fits ``alg``;
4. signature and claims (RFC 7523 §3);
5. the ``jti`` is recorded in the database until the assertion expires, so a replay is refused
   across restarts and across server nodes (RFC 7523 §3 item 7).

Every failure is ``invalid_client`` (401).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from fhirbin.auth.assertions import (
    LEEWAY,
    AssertionRequest,
    invalid_client,
    parse_assertion_request,
    verify_assertion,
)
from fhirbin.auth.jwks import AmbiguousKey, JwksError, KeyNotFound, PublicJwk, parse_jwks_text
from fhirbin.auth.jwks import select_key as _select
from fhirbin.metadata.base import Client, MetadataStore
from fhirbin.providers.jwks_cache import JwksCache, JwksUnavailable

__all__ = ["ClientAssertions", "is_key_client"]


def is_key_client(client: Client) -> bool:
    """Whether the client authenticates with private_key_jwt (it registered a JWK Set)."""
    return bool(client.jwks or client.jwks_url)


class ClientAssertions:
    """Authenticates token requests that carry a client assertion."""

    def __init__(self, jwks: JwksCache, *, clock: Callable[[], float] = time.time) -> None:
        self._jwks = jwks
        self._clock = clock

    async def authenticate(
        self,
        authorization: str | None,
        form: Mapping[str, str],
        catalogue: MetadataStore,
        *,
        token_endpoint: str,
    ) -> Client:
        """The authenticated client; raises OAuthError ``invalid_client`` (401) otherwise."""
        request = parse_assertion_request(authorization, form)
        client = await catalogue.get_client(request.client_id)
        if client is None:
            raise invalid_client("Unknown client: no client is registered with the assertion's iss")
        if not client.active:
            raise invalid_client("This client has been revoked")
        if not is_key_client(client):
            raise invalid_client(
                "This client is registered with a client secret, not keys: authenticate with "
                "client_secret_basic or client_secret_post"
            )
        key = await self._key(client, request)
        verified = verify_assertion(
            request, key, token_endpoint=token_endpoint, now=int(self._clock())
        )
        # Kept until the assertion can no longer be accepted (exp plus the leeway).
        keep_until = datetime.fromtimestamp(verified.expires_at + LEEWAY, UTC)
        if not await catalogue.remember_jti(client.client_id, verified.jti, keep_until):
            raise invalid_client(
                "This client assertion was already used (its jti was seen before); sign a new "
                "one with a fresh jti for every token request"
            )
        return client

    async def _key(self, client: Client, request: AssertionRequest) -> PublicJwk:
        # SMART: a jku header MUST match the JWKS URL the client registered; it is never a
        # reason to fetch from anywhere else (RFC 8725 §3.10 warns against following it).
        if request.jku is not None and request.jku != client.jwks_url:
            raise invalid_client(
                "The assertion's jku header does not match the JWKS URL registered for this client"
            )
        if client.jwks:
            try:
                return _pick(parse_jwks_text(client.jwks, strict=False), request)
            except JwksError as exc:
                raise invalid_client(f"No usable key for this assertion: {exc}") from None
        assert client.jwks_url is not None
        url = client.jwks_url
        try:
            try:
                return _pick(await self._jwks.keys(url), request)
            except KeyNotFound:
                # The client may have rotated its keys: one refetch (at most once a minute).
                return _pick(await self._jwks.keys(url, refresh=True), request)
        except JwksUnavailable as exc:
            raise invalid_client(f"The client's JWK Set could not be fetched: {exc}") from None
        except JwksError as exc:
            raise invalid_client(f"No usable key for this assertion: {exc}") from None


def _pick(keys: tuple[PublicJwk, ...], request: AssertionRequest) -> PublicJwk:
    try:
        return _select(keys, request.kid, request.alg)
    except AmbiguousKey as exc:
        raise invalid_client(f"The client's JWK Set is ambiguous: {exc}") from None
