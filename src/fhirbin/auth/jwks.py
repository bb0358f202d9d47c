"""JSON Web Key Sets: the public keys of a JWK Set, and the one key a signed JWT names.

Pure: values in, values out (fetching and caching a JWK Set is ``fhirbin.providers.jwks_cache``).
Used for SMART Backend Services client keys (``client-confidential-asymmetric.html``) and for the
keys of an external identity provider.

Only asymmetric signature keys are ever read: RSA (at least 2048 bits, RFC 7518 §3.3) and EC on
P-256 / P-384 / P-521. Symmetric (``oct``) keys are never accepted, so no token can be checked
with an HMAC whose secret is public (RFC 8725 §2.1 and §3.1, algorithm confusion).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from fhirbin.auth.jose import clip

__all__ = [
    "SIGNING_ALGS",
    "AmbiguousKey",
    "JwksError",
    "KeyNotFound",
    "PublicJwk",
    "parse_jwks",
    "parse_jwks_text",
    "select_key",
    "validate_jwks_url",
]

#: The JWS algorithms a public key may verify, with the key type (and EC curve) each needs.
#: RFC 7518 §3.3 (RS), §3.4 (ES, the curve is fixed by the algorithm), §3.5 (PS).
SIGNING_ALGS: Mapping[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
}

MIN_RSA_BITS = 2048
_CURVES = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}
# RFC 7518 §6.2.2 and §6.3.2 (private key parameters), §6.4 (symmetric "k"): never in a
# registered public JWK Set.
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_MAX_KEYS = 100

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class JwksError(ValueError):
    """A JWK Set that cannot be used, or no usable key in it; the message says why."""


class KeyNotFound(JwksError):
    """No key of the set has the wanted ``kid`` (a reason to refetch a set that rotates)."""


class AmbiguousKey(JwksError):
    """Several keys fit: SMART client-confidential-asymmetric says that is a failure."""


@dataclass(frozen=True)
class PublicJwk:
    """One usable public key of a JWK Set, with the JWK members that restrict its use."""

    kid: str | None
    kty: str
    crv: str | None
    alg: str | None
    use: str | None
    key_ops: tuple[str, ...] | None
    key: PublicKey

    def fits(self, alg: str) -> bool:
        """Whether this key may verify a JWS signed with ``alg`` (kty, curve, alg, use)."""
        wanted = SIGNING_ALGS.get(alg)
        if wanted is None:
            return False
        kty, crv = wanted
        if self.kty != kty or (crv is not None and self.crv != crv):
            return False
        if self.alg is not None and self.alg != alg:  # RFC 7517 §4.4
            return False
        if self.use is not None and self.use != "sig":  # RFC 7517 §4.2
            return False
        return self.key_ops is None or "verify" in self.key_ops  # RFC 7517 §4.3


def parse_jwks_text(text: str | bytes, *, strict: bool) -> tuple[PublicJwk, ...]:
    """Parse JSON text holding a JWK Set (or, when ``strict``, also one bare JWK)."""
    try:
        document = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise JwksError("the JWK Set is not valid JSON") from None
    if strict and isinstance(document, dict) and "kty" in document and "keys" not in document:
        document = {"keys": [document]}  # a single JWK, as `openssl`-based tooling often makes
    return parse_jwks(document, strict=strict)


def parse_jwks(document: Any, *, strict: bool) -> tuple[PublicJwk, ...]:
    """The usable public keys of a JWK Set (RFC 7517 §5).

    ``strict`` is for registering a client (``fhirbin client create --jwks-file``): every key must
    be a usable RSA or EC public key with a ``kid`` (SMART client-confidential-asymmetric: each JWK
    MUST carry kty and kid), no key may hold private parts, and no two keys of the same type may
    share a kid. Otherwise (a set fetched at run time) keys fhirbin cannot use are skipped: an
    identity provider's set often also lists encryption or unsupported keys.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError('a JWK Set is a JSON object with a "keys" array')
    entries: list[Any] = document["keys"]
    if len(entries) > _MAX_KEYS:
        raise JwksError(f"the JWK Set has more than {_MAX_KEYS} keys")
    keys: list[PublicJwk] = []
    for index, entry in enumerate(entries):
        try:
            keys.append(_parse_key(entry, strict=strict))
        except JwksError as exc:
            if strict:
                raise JwksError(f"key {index + 1} of the JWK Set: {exc}") from None
    if strict:
        if not keys:
            raise JwksError("the JWK Set has no keys")
        seen: set[tuple[str | None, str]] = set()
        for key in keys:
            if (key.kid, key.kty) in seen:
                raise JwksError(f"two {key.kty} keys share the kid {key.kid!r}")
            seen.add((key.kid, key.kty))
    return tuple(keys)


def select_key(keys: Iterable[PublicJwk], kid: str | None, alg: str) -> PublicJwk:
    """The one key that may verify a JWS with header ``kid`` and ``alg``.

    SMART client-confidential-asymmetric "signature verification": the key whose kid matches and
    whose kty suits alg; zero or several such keys is a failure. Without a ``kid`` the set must
    hold exactly one key that suits ``alg``.
    """
    keys = tuple(keys)
    named = keys if kid is None else tuple(k for k in keys if k.kid == kid)
    if not named:
        raise KeyNotFound(f"no key with kid {clip(kid)} in the JWK Set")
    fitting = [k for k in named if k.fits(alg)]
    if not fitting:
        what = "no key" if kid is None else f"the key with kid {clip(kid)}"
        raise KeyNotFound(f"{what} in the JWK Set can verify {clip(alg)} signatures")
    if len(fitting) > 1:
        what = "the JWS names no kid and" if kid is None else f"the kid {clip(kid)} is ambiguous:"
        raise AmbiguousKey(f"{what} {len(fitting)} keys of the JWK Set fit {clip(alg)}")
    return fitting[0]


def _parse_key(entry: Any, *, strict: bool) -> PublicJwk:
    if not isinstance(entry, dict):
        raise JwksError("a JWK is a JSON object")
    kty = entry.get("kty")
    if kty not in ("RSA", "EC"):
        raise JwksError(f"unsupported key type {kty!r} (RSA and EC only)")
    private = [name for name in _PRIVATE_MEMBERS if name in entry]
    if private:
        raise JwksError(f"holds private key parameters ({', '.join(private)}): publish public keys")
    kid = _optional_str(entry, "kid")
    if strict and not kid:
        raise JwksError("a kid is required")
    alg = _optional_str(entry, "alg")
    use = _optional_str(entry, "use")
    key_ops = entry.get("key_ops")
    if key_ops is not None and (
        not isinstance(key_ops, list) or not all(isinstance(op, str) for op in key_ops)
    ):
        raise JwksError("key_ops must be an array of strings")
    if strict and alg is not None and alg not in SIGNING_ALGS:
        raise JwksError(f"alg {alg!r} is not a supported signature algorithm")
    key: PublicKey
    crv: str | None = None
    if kty == "RSA":
        key = _rsa(entry)
    else:
        crv = _optional_str(entry, "crv")
        if crv not in _CURVES:
            raise JwksError(f"unsupported EC curve {crv!r} (P-256, P-384 or P-521)")
        key = _ec(entry)
    return PublicJwk(
        kid=kid,
        kty=kty,
        crv=crv,
        alg=alg,
        use=use,
        key_ops=None if key_ops is None else tuple(key_ops),
        key=key,
    )


def _rsa(entry: dict[str, Any]) -> rsa.RSAPublicKey:
    if not isinstance(entry.get("n"), str) or not isinstance(entry.get("e"), str):
        raise JwksError("an RSA key needs n and e")
    try:
        key = RSAAlgorithm.from_jwk(entry)
    except (jwt.PyJWTError, ValueError, TypeError):
        raise JwksError("not a valid RSA public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise JwksError("not an RSA public key")
    if key.key_size < MIN_RSA_BITS:  # RFC 7518 §3.3: 2048 bits or larger MUST be used
        raise JwksError(f"the RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} needed")
    return key


def _ec(entry: dict[str, Any]) -> ec.EllipticCurvePublicKey:
    if not isinstance(entry.get("x"), str) or not isinstance(entry.get("y"), str):
        raise JwksError("an EC key needs x and y")
    try:
        key = ECAlgorithm.from_jwk(entry)  # also checks the point is on the curve
    except (jwt.PyJWTError, ValueError, TypeError):
        raise JwksError("not a valid EC public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise JwksError("not an EC public key")
    return key


def _optional_str(entry: Mapping[str, Any], name: str) -> str | None:
    value = entry.get(name)
    if value is not None and not isinstance(value, str):
        raise JwksError(f"{name} must be a string")
    return value


def validate_jwks_url(url: str) -> str:
    """Check a client's JWKS URL at registration; return it unchanged (it is compared verbatim
    with an assertion's ``jku``).

    SMART client-confidential-asymmetric: the JWK Set URL is "reachable over TLS", so https is
    required; plain http only for a loopback host (a key service on the same machine, tests).
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise JwksError("not a valid URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise JwksError("the JWKS URL must be an absolute https:// URL")
    if parts.username is not None or parts.password is not None:
        raise JwksError("the JWKS URL must not carry credentials")
    if parts.fragment:
        raise JwksError("the JWKS URL must not have a #fragment")
    if parts.scheme == "http" and not _loopback(host):
        raise JwksError("the JWKS URL must use https (http only for localhost)")
    return url


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
