"""JWT access tokens of an external identity provider (Keycloak, Entra ID, Okta, a gateway).

Configured by ``FHIRBIN_EXTERNAL_ISSUER`` (the ``iss`` its tokens carry) and
``FHIRBIN_EXTERNAL_JWKS`` (its JWK Set: a URL or a ``file://`` path, see ``JwksCache`` with
``floor=True``: never fetched more than once a minute). The rules a token must pass are in
``fhirbin.auth.external``; the key is the one its ``kid`` names (a token without ``kid`` is
accepted only when the set has exactly one key that fits its ``alg``), and an unknown ``kid``
makes fhirbin refetch the set (at most once a minute) before refusing the token.

A verified token is remembered by the SHA-256 of its text until it expires, so a busy client
costs one signature check; times and audience are re-checked on every use.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

from fhirbin.auth.external import (
    ExternalClaims,
    check_external_header,
    verify_external_jwt,
)
from fhirbin.auth.jose import UnverifiedJws
from fhirbin.auth.jwks import AmbiguousKey, JwksError, KeyNotFound, PublicJwk, select_key
from fhirbin.auth.tokens import AccessClaims
from fhirbin.errors import Unauthorized
from fhirbin.providers.jwks_cache import JwksCache, JwksUnavailable

__all__ = ["ExternalTokens"]


class ExternalTokens:
    """Verifies the JWTs of one external issuer."""

    def __init__(
        self,
        issuer: str,
        jwks_source: str,
        jwks: JwksCache,
        *,
        clock: Callable[[], float] = time.time,
        cache_size: int = 10000,
    ) -> None:
        self.issuer = issuer
        self._source = jwks_source
        self._jwks = jwks
        self._clock = clock
        self._cache_size = cache_size
        self._cache: dict[bytes, ExternalClaims] = {}  # insertion order = age
        self._lock = threading.Lock()

    async def verify(self, token: str, jws: UnverifiedJws, audience: str) -> AccessClaims:
        """The token's claims, or Unauthorized (error="invalid_token")."""
        now = int(self._clock())
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None:
            try:
                return cached.check(audience, now)
            except Unauthorized:
                with self._lock:
                    self._cache.pop(digest, None)
                raise
        alg, kid = check_external_header(jws)
        key = await self._key(kid, alg)
        entry = verify_external_jwt(token, key, alg, issuer=self.issuer)
        claims = entry.check(audience, now)  # before caching: never cache a refused token
        self._remember(digest, entry)
        return claims

    async def _key(self, kid: str | None, alg: str) -> PublicJwk:
        try:
            try:
                return _select(await self._jwks.keys(self._source), kid, alg)
            except KeyNotFound:
                if kid is None:
                    raise
                # A key the cached set does not know: the issuer may have rotated its keys.
                return _select(await self._jwks.keys(self._source, refresh=True), kid, alg)
        except JwksUnavailable:
            # Logged by JwksCache with the reason; the client only learns it cannot be checked.
            raise Unauthorized(
                "The access token could not be checked: the issuer's keys are unavailable"
            ) from None
        except JwksError as exc:
            raise Unauthorized(f"The access token was signed by an unknown key: {exc}") from None

    def _remember(self, digest: bytes, entry: ExternalClaims) -> None:
        if self._cache_size <= 0:
            return
        with self._lock:
            while len(self._cache) >= self._cache_size:
                del self._cache[next(iter(self._cache))]  # oldest first
            self._cache[digest] = entry


def _select(keys: tuple[PublicJwk, ...], kid: str | None, alg: str) -> PublicJwk:
    try:
        return select_key(keys, kid, alg)
    except AmbiguousKey as exc:
        raise Unauthorized(f"The access token's key is ambiguous: {exc}") from None
