"""Access tokens: the signing key, issuing ES256 JWTs and verifying them on every request.

This module owns the token format (RFC 9068 "JWT Profile for OAuth 2.0 Access Tokens": header
``typ: at+jwt``, claims iss/sub/aud/exp/iat/jti/client_id/scope), the published JWK Set and the
rules a Bearer token must pass (RFC 6750 §3.1 ``invalid_token``; SMART Backend Services: the
resource server validates signature, expiry and audience). The one piece of I/O in ``auth`` is
loading, or creating on first start, the signing key file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from fhirbin.auth.keyfile import load_or_create_signing_key
from fhirbin.errors import Unauthorized

__all__ = [
    "MAX_TOKEN_LENGTH",
    "AccessClaims",
    "TokenIssuer",
    "TokenVerifier",
    "load_or_create_signing_key",
]

#: Longer Bearer values are refused before any parsing (our tokens are well under 1 KiB).
MAX_TOKEN_LENGTH = 8192
_ALG = "ES256"
# RFC 9068 §4: resource servers MUST check typ is "at+jwt" (or "application/at+jwt"); this keeps
# any other JWT signed by the same key (an ID token, a future assertion) from passing as one.
_TYPES = frozenset({"at+jwt", "application/at+jwt"})
_WRONG_AUDIENCE = "The access token was not issued for this server (aud)"
_REQUIRED = ("exp", "iat", "jti", "client_id", "scope", "iss", "aud")
#: The access_token_ttl default (config.py): what the token endpoint issues unless told.
DEFAULT_MAX_LIFETIME = 300


@dataclass(frozen=True)
class AccessClaims:
    """The verified content of an access token; ``audience`` is the one it was checked against."""

    client_id: str
    scope: str
    jti: str
    issuer: str
    audience: str
    issued_at: int
    expires_at: int
    subject: str
    #: SMART launch context: the Patient id a patient/ or user/ token is bound to.
    patient: str | None = None
    #: ``nbf`` when the token has one (fhirbin issues none; a token that has one is checked).
    not_before: int | None = None


class TokenIssuer:
    """Signs access tokens with one EC P-256 key and publishes its public half."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, issuer: str) -> None:
        self._key = key
        self._issuer = issuer
        self._public = key.public_key()
        self._jwk = _public_jwk(self._public)
        self._kid = _thumbprint(self._jwk)

    @property
    def kid(self) -> str:
        """RFC 7638 JWK thumbprint (SHA-256, base64url) of the public key."""
        return self._kid

    @property
    def public_keys(self) -> dict[str, ec.EllipticCurvePublicKey]:
        """``{kid: public key}``, ready for TokenVerifier."""
        return {self._kid: self._public}

    def issue(
        self, *, audience: str, client_id: str, scope: str, ttl: int, now: int | None = None
    ) -> str:
        """An ES256 JWT access token valid for ``ttl`` seconds from ``now``."""
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        issued_at = int(time.time()) if now is None else now
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "sub": client_id,
            "aud": audience,
            "exp": issued_at + ttl,
            "iat": issued_at,
            "jti": secrets.token_urlsafe(16),  # 128 random bits
            "client_id": client_id,
            "scope": scope,
        }
        return jwt.encode(
            claims, self._key, algorithm=_ALG, headers={"typ": "at+jwt", "kid": self._kid}
        )

    def sign(self, claims: Mapping[str, Any], *, typ: str) -> str:
        """Another kind of ES256 JWT signed with this key (auth/signed_urls.py), told apart from
        access tokens by its ``typ`` header (RFC 8725 §3.11: explicit typing)."""
        if typ.lower() in _TYPES:
            raise ValueError("access tokens are made by issue()")
        return jwt.encode(
            dict(claims), self._key, algorithm=_ALG, headers={"typ": typ, "kid": self._kid}
        )

    def jwks(self) -> dict[str, Any]:
        """The JWK Set to publish: public parts only (RFC 7517 §5)."""
        return {"keys": [{**self._jwk, "kid": self._kid, "use": "sig", "alg": _ALG}]}


@dataclass(frozen=True)
class _Cached:
    claims: AccessClaims
    audiences: frozenset[str]


class TokenVerifier:
    """Checks Bearer tokens; remembers good ones so a hot client costs one signature check."""

    def __init__(
        self,
        public_keys: Mapping[str, ec.EllipticCurvePublicKey],
        issuer: str,
        leeway: int = 5,
        cache_size: int = 10000,
        max_lifetime: int = DEFAULT_MAX_LIFETIME,
    ) -> None:
        """``max_lifetime`` is the lifetime (seconds) of the tokens this server issues (its
        ``access_token_ttl``): a token of its own that claims to live longer was not issued
        by it as configured, and is refused."""
        if not 0 <= leeway <= 5:
            # Clock skew allowance only: SMART wants short-lived tokens honoured to the second.
            raise ValueError("leeway must be between 0 and 5 seconds")
        if max_lifetime <= 0:
            raise ValueError("max_lifetime must be positive")
        self._max_lifetime = max_lifetime
        self._keys = dict(public_keys)
        self._issuer = issuer
        self._leeway = leeway
        self._cache_size = cache_size
        self._cache: dict[bytes, _Cached] = {}  # insertion order = age
        self._lock = threading.Lock()

    @property
    def issuer(self) -> str:
        """The ``iss`` this verifier accepts (fhirbin's own)."""
        return self._issuer

    def trust(self, public_keys: Mapping[str, ec.EllipticCurvePublicKey]) -> None:
        """Verify with these keys from now on (auth/keyring.py: keys another node made)."""
        self._keys = dict(public_keys)

    def knows(self, token: str) -> bool:
        """Whether ``token`` was verified before and is still cached (``verify`` re-checks its
        times and audience); lets callers skip decoding a hot token to route it."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        with self._lock:
            return digest in self._cache

    def cached(self, token: str, audience: str) -> AccessClaims | None:
        """The claims of ``token`` if it was verified before and is still good for
        ``audience``, else None (``verify`` then decides, and says why). Never decodes a token
        and never raises: the fast lane's check (api/fastlane.py)."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is None or audience not in hit.audiences:
            return None
        try:
            self._check_times(hit.claims, int(time.time()))
        except Unauthorized:
            return None
        claims = hit.claims
        return claims if claims.audience == audience else replace(claims, audience=audience)

    def verify(self, token: str, audience: str, now: int | None = None) -> AccessClaims:
        """The token's claims, or Unauthorized (error="invalid_token", RFC 6750 §3.1)."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise Unauthorized("The access token is too long")
        at = int(time.time()) if now is None else now
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is None:
            cached = self._decode(token, audience)
            self._check_times(cached.claims, at)  # before caching: never cache a dead token
            self._remember(digest, cached)
        else:
            try:
                self._check_times(cached.claims, at)
            except Unauthorized:
                with self._lock:
                    self._cache.pop(digest, None)
                raise
        if audience not in cached.audiences:
            raise Unauthorized(_WRONG_AUDIENCE)
        claims = cached.claims
        return claims if claims.audience == audience else replace(claims, audience=audience)

    def _decode(self, token: str, audience: str) -> _Cached:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthorized("The access token is not a well-formed JWT") from None
        # Refuse any other algorithm before a key is touched: "none", HS256 keyed with our
        # public key's bytes, RS256 (the classic JWT algorithm-confusion attacks).
        if header.get("alg") != _ALG:
            raise Unauthorized("The access token must be signed with ES256")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in _TYPES:
            raise Unauthorized("The access token's typ header must be at+jwt")
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise Unauthorized("The access token was signed by an unknown key")
        try:
            # Time claims are checked by _check_times against the injectable clock (PyJWT would
            # use its own); verify() re-checks the audience, which matters for cache hits.
            payload = jwt.decode(
                token,
                key,
                algorithms=[_ALG],
                audience=audience,
                issuer=self._issuer,
                options={
                    "require": list(_REQUIRED),
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise Unauthorized("The access token's signature is invalid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"The access token lacks the {exc.claim} claim") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized(_WRONG_AUDIENCE) from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("The access token was not issued by this server (iss)") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("The access token is not a valid JWT") from None
        return _claims_from(payload)

    def _check_times(self, claims: AccessClaims, now: int) -> None:
        # RFC 7519 §4.1.4: reject at or after exp; the leeway absorbs clock skew only.
        if now >= claims.expires_at + self._leeway:
            raise Unauthorized("The access token has expired")
        if claims.issued_at > now + self._leeway:
            raise Unauthorized("The access token was issued in the future (iat)")
        if claims.not_before is not None and claims.not_before > now + self._leeway:
            raise Unauthorized("The access token is not valid yet (nbf)")
        # A token that lives longer than this server issues them (exp - iat), or that has more
        # life left than that (exp - now, whatever iat says), was not issued as configured.
        longest = self._max_lifetime + self._leeway
        if claims.expires_at - claims.issued_at > longest or claims.expires_at - now > longest:
            raise Unauthorized(
                f"The access token lives longer than the {self._max_lifetime} s this server "
                "issues (exp)"
            )

    def _remember(self, digest: bytes, entry: _Cached) -> None:
        if self._cache_size <= 0:
            return
        with self._lock:
            while len(self._cache) >= self._cache_size:
                del self._cache[next(iter(self._cache))]  # oldest first
            self._cache[digest] = entry


def _claims_from(payload: Mapping[str, Any]) -> _Cached:
    """Type-check the claims PyJWT left alone; a signed token with odd types is still refused."""
    aud = payload["aud"]
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise Unauthorized("The access token's aud claim is malformed")
    strings = {}
    for name in ("client_id", "scope", "jti", "iss"):
        value = payload[name]
        if not isinstance(value, str):
            raise Unauthorized(f"The access token's {name} claim must be a string")
        strings[name] = value
    sub = payload.get("sub", strings["client_id"])
    if not isinstance(sub, str):
        raise Unauthorized("The access token's sub claim must be a string")
    times = {}
    for name in ("exp", "iat"):
        value = payload[name]
        # bool is an int subclass; JSON true is not a NumericDate (RFC 7519 §2).
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Unauthorized(f"The access token's {name} claim must be a number")
        times[name] = int(value)
    not_before = payload.get("nbf")
    if not_before is not None and (
        isinstance(not_before, bool) or not isinstance(not_before, int | float)
    ):
        raise Unauthorized("The access token's nbf claim must be a number")
    claims = AccessClaims(
        client_id=strings["client_id"],
        scope=strings["scope"],
        jti=strings["jti"],
        issuer=strings["iss"],
        audience=audiences[0] if audiences else "",
        issued_at=times["iat"],
        expires_at=times["exp"],
        subject=sub,
        not_before=None if not_before is None else int(not_before),
    )
    return _Cached(claims, frozenset(audiences))


def _public_jwk(public: ec.EllipticCurvePublicKey) -> dict[str, str]:
    numbers = public.public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": _b64_int(numbers.x), "y": _b64_int(numbers.y)}


def _thumbprint(jwk: Mapping[str, str]) -> str:
    # RFC 7638 §3.2: the required members only, lexicographic order, no whitespace.
    required = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode("ascii")).digest())


def _b64_int(value: int) -> str:
    # RFC 7518 §6.2.1.2: P-256 coordinates are exactly 32 octets, big-endian, zero-padded.
    return _b64(value.to_bytes(32, "big"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
