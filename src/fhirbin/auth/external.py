"""Access tokens issued elsewhere: an external identity provider's JWTs and RFC 7662 answers.

Pure: values in, values out. ``fhirbin.providers`` fetches the provider's keys and asks the
introspection endpoint; this module decides whether what came back is acceptable and turns it
into :class:`AccessClaims`:

- JWTs (RFC 9068 / RFC 7519): an asymmetric ``alg`` from an allow-list, never ``none`` or an
  HMAC (RFC 8725 §3.1: an HMAC "signed" with the provider's public key must fail); ``iss`` equal
  to the configured issuer; ``aud`` containing fhirbin's audience (RFC 8725 §3.9); ``exp``
  required, ``nbf`` honoured, ``iat`` optional, 5 s of clock-skew leeway.
- Introspection answers (RFC 7662 §2.2): ``active`` must be true; ``exp`` is required here
  (SMART token-introspection.html: the response MUST include it), and ``aud``, when present,
  must contain fhirbin's audience.
- Scopes come from ``scope`` (space-separated, RFC 8693 §4.2) or ``scp`` (a list or a string,
  as Entra ID and Okta send it); the client from ``client_id``, ``azp``, ``cid`` or ``sub``; the
  SMART ``patient`` claim becomes the patient context.

Every refusal is :class:`fhirbin.errors.Unauthorized` (RFC 6750 ``invalid_token``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import jwt

from fhirbin.auth.jose import UnverifiedJws, clip
from fhirbin.auth.jwks import PublicJwk
from fhirbin.auth.tokens import AccessClaims
from fhirbin.errors import Unauthorized

__all__ = [
    "EXTERNAL_ALGS",
    "LEEWAY",
    "ExternalClaims",
    "check_external_header",
    "claims_from_introspection",
    "verify_external_jwt",
]

#: Signature algorithms accepted on external JWTs (RFC 7518 §3.3-3.5): asymmetric only.
EXTERNAL_ALGS: tuple[str, ...] = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
)
LEEWAY = 5
_CLIENT_CLAIMS = ("client_id", "azp", "cid", "sub")


@dataclass(frozen=True)
class ExternalClaims:
    """Verified claims, plus what is checked again on every use (times and audience).

    ``audiences`` is None only for an introspection answer that states no ``aud``.
    """

    claims: AccessClaims
    audiences: frozenset[str] | None
    not_before: int | None

    def check(self, audience: str, now: int, leeway: int = LEEWAY) -> AccessClaims:
        """The claims if valid at ``now`` for ``audience``; else Unauthorized."""
        # RFC 7519 §4.1.4: reject at or after exp; the leeway absorbs clock skew only.
        if now >= self.claims.expires_at + leeway:
            raise Unauthorized("The access token has expired")
        if self.not_before is not None and self.not_before > now + leeway:
            raise Unauthorized("The access token is not valid yet (nbf)")
        if self.claims.issued_at > now + leeway:
            raise Unauthorized("The access token was issued in the future (iat)")
        if self.audiences is not None and audience not in self.audiences:
            raise Unauthorized(
                f"The access token was not issued for this server (aud must include {audience})"
            )
        claims = self.claims
        return claims if claims.audience == audience else replace(claims, audience=audience)


def check_external_header(jws: UnverifiedJws) -> tuple[str, str | None]:
    """The token's ``alg`` (from the allow-list) and ``kid``; Unauthorized otherwise.

    RFC 8725 §3.1: the algorithm is checked before any key is chosen, so ``none`` and the HMAC
    algorithms never reach a verifier.
    """
    alg = jws.alg
    if not isinstance(alg, str) or not alg:
        raise Unauthorized("The access token's header has no alg")
    if alg.lower() == "none":
        raise Unauthorized("Unsigned access tokens (alg none) are refused")
    if alg.upper().startswith("HS"):
        raise Unauthorized(
            f"HMAC-signed access tokens ({clip(alg)}) are refused from an external issuer"
        )
    if alg not in EXTERNAL_ALGS:
        raise Unauthorized(
            f"The access token's alg {clip(alg)} is not accepted; accepted: "
            + ", ".join(EXTERNAL_ALGS)
        )
    if "crit" in jws.header:
        raise Unauthorized("The access token uses a crit header, which is not supported")
    kid = jws.header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid):
        raise Unauthorized("The access token's kid header must be a non-empty string")
    return alg, kid


def verify_external_jwt(token: str, key: PublicJwk, alg: str, *, issuer: str) -> ExternalClaims:
    """Check the signature and issuer, and read the claims; times and audience are checked
    by :meth:`ExternalClaims.check` (so a cached token is re-checked on every use)."""
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=[alg],
            issuer=issuer,
            options={
                "require": ["iss", "exp", "aud"],
                "verify_aud": False,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise Unauthorized("The access token's signature is invalid") from None
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthorized(f"The access token lacks the {exc.claim} claim") from None
    except jwt.InvalidIssuerError:
        raise Unauthorized("The access token's issuer (iss) is not trusted") from None
    except jwt.PyJWTError:
        raise Unauthorized("The access token is not a valid JWT") from None
    return _external_claims(payload, issuer=issuer, audience_required=True)


def claims_from_introspection(response: Any, *, default_issuer: str) -> ExternalClaims:
    """Turn an RFC 7662 §2.2 introspection response into claims; Unauthorized if unusable."""
    if not isinstance(response, dict):
        raise Unauthorized("The introspection endpoint's answer is not a JSON object")
    # RFC 7662 §2.2: "active" is REQUIRED and boolean; anything but true means no.
    if response.get("active") is not True:
        raise Unauthorized("The access token is not active (introspection)")
    if "exp" not in response:
        raise Unauthorized("The introspection answer lacks exp; fhirbin needs a token lifetime")
    issuer = response.get("iss", default_issuer)
    if not isinstance(issuer, str):
        raise Unauthorized("The introspection answer's iss must be a string")
    return _external_claims(response, issuer=issuer, audience_required=False)


def _external_claims(
    payload: Mapping[str, Any], *, issuer: str, audience_required: bool
) -> ExternalClaims:
    audiences: frozenset[str] | None = None
    if "aud" in payload or audience_required:
        aud = payload.get("aud")
        listed = [aud] if isinstance(aud, str) else aud
        if not isinstance(listed, list) or not all(isinstance(a, str) for a in listed):
            raise Unauthorized("The access token's aud claim is malformed")
        audiences = frozenset(listed)
    expires_at = _time(payload, "exp")
    assert expires_at is not None  # required by both callers
    claims = AccessClaims(
        client_id=_client_id(payload),
        scope=_scope(payload),
        jti=_optional_str(payload, "jti") or "",
        issuer=issuer,
        audience="",
        issued_at=_time(payload, "iat") or 0,
        expires_at=expires_at,
        subject=_optional_str(payload, "sub") or _client_id(payload),
        patient=_optional_str(payload, "patient"),
    )
    return ExternalClaims(claims, audiences, _time(payload, "nbf"))


def _scope(payload: Mapping[str, Any]) -> str:
    scope = payload.get("scope")
    if scope is not None:
        if not isinstance(scope, str):
            raise Unauthorized("The access token's scope claim must be a space-separated string")
        return scope
    scp = payload.get("scp")
    if scp is None:
        return ""
    if isinstance(scp, str):
        return scp
    if isinstance(scp, list) and all(isinstance(s, str) and " " not in s for s in scp):
        return " ".join(scp)
    raise Unauthorized("The access token's scp claim must be a list of scopes or a string")


def _client_id(payload: Mapping[str, Any]) -> str:
    for name in _CLIENT_CLAIMS:
        value = payload.get(name)
        if isinstance(value, str) and value:
            return value
    raise Unauthorized("The access token names no client (client_id, azp, cid or sub)")


def _optional_str(payload: Mapping[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value is not None and not isinstance(value, str):
        raise Unauthorized(f"The access token's {name} claim must be a string")
    return value


def _time(payload: Mapping[str, Any], name: str) -> int | None:
    if name not in payload:
        return None
    value = payload[name]
    # bool is an int subclass; JSON true is not a NumericDate (RFC 7519 §2).
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unauthorized(f"The access token's {name} claim must be a number")
    return int(value)
