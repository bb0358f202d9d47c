"""Opaque access tokens: RFC 7662 token introspection, with a short positive cache.

fhirbin POSTs ``token=…&token_type_hint=access_token`` to ``FHIRBIN_INTROSPECTION_URL``,
authenticating with HTTP Basic (RFC 7662 §2.1 requires the caller to be authorized; RFC 6749
§2.3.1 client_secret_basic with the configured id and secret). What the answer must say is
decided by ``fhirbin.auth.external.claims_from_introspection``.

Only active answers are cached, by SHA-256 of the token, for ``FHIRBIN_INTROSPECTION_CACHE_TTL``
seconds and never past the token's ``exp`` (RFC 7662 §4: caching trades freshness for load);
a negative answer is never cached, so a token the provider starts accepting works at once.
An endpoint that cannot be reached or answers with an error is a 401 ``invalid_token`` (and a
log line): fhirbin cannot tell the token is good, and a 401 makes well-behaved clients fetch a
new token and retry.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable
from urllib.parse import quote_plus

import httpx
import structlog

from fhirbin.auth.external import ExternalClaims, claims_from_introspection
from fhirbin.auth.tokens import AccessClaims
from fhirbin.errors import Unauthorized

__all__ = ["Introspector"]

MAX_ANSWER_BYTES = 64 * 1024
log = structlog.get_logger("fhirbin.providers")


class Introspector:
    """Asks an RFC 7662 endpoint about tokens fhirbin cannot verify itself."""

    def __init__(
        self,
        url: str,
        client_id: str,
        client_secret: str,
        *,
        http: httpx.AsyncClient,
        cache_ttl: int,
        clock: Callable[[], float] = time.time,
        cache_size: int = 10000,
    ) -> None:
        self.url = url
        self._http = http
        self._ttl = cache_ttl
        self._clock = clock
        self._cache_size = cache_size
        self._cache: dict[bytes, tuple[ExternalClaims, float]] = {}  # insertion order = age
        self._lock = threading.Lock()
        self._authorization: str | None = None
        if client_id:
            # RFC 6749 §2.3.1: both parts form-urlencoded before they are joined.
            pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
            self._authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        #: How many introspection requests were sent (tests count them).
        self.requests = 0

    async def introspect(self, token: str, audience: str) -> AccessClaims:
        """The token's claims if the endpoint says it is active; Unauthorized otherwise."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        now = self._clock()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None:
            entry, until = hit
            if now < until:
                return entry.check(audience, int(now))
            with self._lock:
                self._cache.pop(digest, None)
        entry = claims_from_introspection(await self._ask(token), default_issuer=self.url)
        claims = entry.check(audience, int(now))  # before caching: never cache a refusal
        until = min(now + self._ttl, float(entry.claims.expires_at))
        if self._ttl > 0 and until > now:
            self._remember(digest, entry, until)
        return claims

    async def _ask(self, token: str) -> object:
        headers = {"Accept": "application/json"}
        if self._authorization is not None:
            headers["Authorization"] = self._authorization
        self.requests += 1
        form = {"token": token, "token_type_hint": "access_token"}
        try:
            async with self._http.stream("POST", self.url, data=form, headers=headers) as answer:
                if answer.status_code != 200:
                    raise _Failed(f"answered HTTP {answer.status_code}")
                body = bytearray()
                async for chunk in answer.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise _Failed(f"answered more than {MAX_ANSWER_BYTES} bytes")
        except httpx.HTTPError as exc:
            log.error("introspection_failed", url=self.url, reason=f"{type(exc).__name__}: {exc}")
            raise Unauthorized(
                "The access token could not be checked: the introspection endpoint did not answer"
            ) from None
        except _Failed as exc:
            log.error("introspection_failed", url=self.url, reason=str(exc))
            raise Unauthorized(
                f"The access token could not be checked: the introspection endpoint {exc}"
            ) from None
        try:
            return json.loads(body)
        except ValueError:
            log.error("introspection_failed", url=self.url, reason="the answer is not JSON")
            raise Unauthorized(
                "The access token could not be checked: the introspection answer is not JSON"
            ) from None

    def _remember(self, digest: bytes, entry: ExternalClaims, until: float) -> None:
        with self._lock:
            while len(self._cache) >= self._cache_size:
                del self._cache[next(iter(self._cache))]  # oldest first
            self._cache[digest] = (entry, until)


class _Failed(Exception):
    """The introspection endpoint answered, but not usefully."""
