"""Client assertions at the token endpoint: SMART Backend Services ``private_key_jwt``.

Pure: values in, values out. The rules are RFC 7523 §3 (JWT bearer client authentication) as
profiled by SMART App Launch 2.2 ``client-confidential-asymmetric.html``: header ``alg`` (RS384
or ES384, and the others listed in ``ASSERTION_ALGS``), ``kid`` and optional ``jku``; claims
``iss`` = ``sub`` = client_id, ``aud`` = the token endpoint URL, ``exp`` at most five minutes
ahead, ``jti`` used once. Finding the key (the client's registered JWK Set, by value or fetched
from its URL) and remembering jtis (in the database) happen in
``fhirbin.providers.assertion_verifier``.

Every failure is RFC 6749 §5.2 ``invalid_client`` (RFC 7523 §3.2 and SMART: any authentication
failure is ``invalid_client``), HTTP 401, with a description saying what was wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from fhirbin.auth.jose import clip, peek
from fhirbin.auth.jwks import PublicJwk
from fhirbin.errors import OAuthError

__all__ = [
    "ASSERTION_ALGS",
    "ASSERTION_TYPE",
    "LEEWAY",
    "MAX_ASSERTION_LIFETIME",
    "AssertionRequest",
    "VerifiedAssertion",
    "invalid_client",
    "is_assertion_request",
    "parse_assertion_request",
    "verify_assertion",
]

#: RFC 7523 §2.2: the client_assertion_type of a JWT client assertion.
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Accepted assertion algorithms (smart-configuration
#: ``token_endpoint_auth_signing_alg_values_supported``).
#: SMART requires clients to support RS384 and ES384 and servers at least one; "either MAY support
#: more", so the common RS256/ES256 (library defaults) and the PS and 512 variants work too.
#: Never "none" or an HMAC (RFC 8725 §3.1): the client holds a private key, not a shared secret.
ASSERTION_ALGS: tuple[str, ...] = (
    "RS384",
    "ES384",
    "RS256",
    "ES256",
    "RS512",
    "ES512",
    "PS256",
    "PS384",
    "PS512",
)
#: SMART client-confidential-asymmetric: exp "no more than five minutes in the future".
MAX_ASSERTION_LIFETIME = 300
#: Seconds of clock skew tolerated on exp, nbf and iat.
LEEWAY = 5
MAX_ASSERTION_LENGTH = 8192
#: The assertion_jti table's column width.
MAX_JTI_LENGTH = 255


def invalid_client(description: str) -> OAuthError:
    """RFC 6749 §5.2 ``invalid_client`` with status 401."""
    return OAuthError("invalid_client", description, status=401)


@dataclass(frozen=True)
class AssertionRequest:
    """A token request's client assertion, shape-checked but NOT yet verified."""

    assertion: str
    client_id: str
    alg: str
    kid: str
    jku: str | None


@dataclass(frozen=True)
class VerifiedAssertion:
    """What a verified assertion tells: who signed it, its jti and until when it is valid."""

    client_id: str
    jti: str
    expires_at: int


def is_assertion_request(form: Mapping[str, str]) -> bool:
    """Whether the client chose ``private_key_jwt`` (RFC 7521 §4.2 parameters present)."""
    return "client_assertion" in form or "client_assertion_type" in form


def parse_assertion_request(authorization: str | None, form: Mapping[str, str]) -> AssertionRequest:
    """Check what can be checked without a key: parameters, header, iss/sub; raise invalid_client.

    The claims read here are unverified and only name the client whose keys to use;
    :func:`verify_assertion` checks them again from the verified token.
    """
    # RFC 6749 §2.3: a client MUST NOT use more than one authentication method per request.
    if authorization is not None and authorization.strip():
        raise invalid_client(
            "The request carries both a client assertion and an Authorization header; "
            "use only private_key_jwt"
        )
    if "client_secret" in form:
        raise invalid_client(
            "The request carries both a client assertion and a client_secret; "
            "use only private_key_jwt"
        )
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        raise invalid_client(f"client_assertion_type must be {ASSERTION_TYPE}")
    assertion = form.get("client_assertion", "")
    if not assertion:
        raise invalid_client("client_assertion (the signed JWT) is missing")
    if len(assertion) > MAX_ASSERTION_LENGTH:
        raise invalid_client(f"client_assertion is longer than {MAX_ASSERTION_LENGTH} characters")
    jws = peek(assertion)
    if jws is None:
        raise invalid_client("client_assertion is not a JWT (a compact JWS of a JSON object)")
    alg = _check_alg(jws.alg)
    header = jws.header
    typ = header.get("typ")
    # SMART: typ is "JWT". Any other type (an access token, "at+jwt") is not an assertion
    # (RFC 8725 §3.11 explicit typing); a missing typ is tolerated.
    if typ is not None and (not isinstance(typ, str) or typ.lower() != "jwt"):
        raise invalid_client(f"The client assertion's typ header must be JWT, not {clip(typ)}")
    if "crit" in header:
        raise invalid_client("The client assertion uses a crit header, which is not supported")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise invalid_client(
            "The client assertion's header must name the signing key (kid) of the client's JWKS"
        )
    jku = header.get("jku")
    if jku is not None and not isinstance(jku, str):
        raise invalid_client("The client assertion's jku header must be a URL string")
    issuer = jws.claims.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise invalid_client("The client assertion lacks iss (the client_id)")
    if jws.claims.get("sub") != issuer:
        raise invalid_client("The client assertion's sub must equal its iss (both the client_id)")
    form_client = form.get("client_id")
    if form_client is not None and form_client != issuer:
        raise invalid_client("client_id differs from the client assertion's iss")
    return AssertionRequest(assertion, issuer, alg, kid, jku)


def verify_assertion(
    request: AssertionRequest,
    key: PublicJwk,
    *,
    token_endpoint: str,
    now: int,
    leeway: int = LEEWAY,
) -> VerifiedAssertion:
    """Verify signature and claims (RFC 7523 §3 items 1-10); raise invalid_client."""
    try:
        payload: dict[str, Any] = jwt.decode(
            request.assertion,
            key.key,
            algorithms=[request.alg],
            audience=token_endpoint,
            issuer=request.client_id,
            options={
                "require": ["iss", "sub", "aud", "exp", "jti"],
                # Times are checked below against the caller's clock.
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise invalid_client(
            f"The client assertion's signature does not verify with the client's key "
            f"{clip(request.kid)}"
        ) from None
    except jwt.MissingRequiredClaimError as exc:
        raise invalid_client(f"The client assertion lacks the {exc.claim} claim") from None
    except jwt.InvalidAudienceError:
        # RFC 7523 §3 item 3: aud identifies the authorization server (SMART: the token URL).
        raise invalid_client(
            f"The client assertion's aud must be the token endpoint {token_endpoint}"
        ) from None
    except jwt.InvalidIssuerError:
        raise invalid_client("The client assertion's iss must be the client_id") from None
    except jwt.PyJWTError as exc:
        raise invalid_client(f"The client assertion is not a valid JWT: {exc}") from None
    if payload.get("sub") != request.client_id:
        raise invalid_client("The client assertion's sub must equal its iss (both the client_id)")
    expires_at = _number(payload, "exp")
    # RFC 7523 §3 item 4: reject at or after exp; the leeway absorbs clock skew only.
    if now >= expires_at + leeway:
        raise invalid_client("The client assertion has expired (exp)")
    if expires_at > now + MAX_ASSERTION_LIFETIME + leeway:
        raise invalid_client(
            "The client assertion's exp is more than 5 minutes ahead; SMART Backend Services "
            "allows at most 300 seconds"
        )
    if "nbf" in payload and _number(payload, "nbf") > now + leeway:
        raise invalid_client("The client assertion is not valid yet (nbf)")
    if "iat" in payload and _number(payload, "iat") > now + leeway:
        raise invalid_client("The client assertion was issued in the future (iat)")
    jti = payload.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
        raise invalid_client(
            f"The client assertion's jti must be a non-empty string of at most "
            f"{MAX_JTI_LENGTH} characters"
        )
    return VerifiedAssertion(request.client_id, jti, expires_at)


def _check_alg(alg: Any) -> str:
    # RFC 8725 §3.1 and §2.1: decide the algorithm from an allow-list before any key is touched.
    if not isinstance(alg, str) or not alg:
        raise invalid_client("The client assertion's header has no alg")
    if alg.lower() == "none":
        raise invalid_client("Unsigned client assertions (alg none) are refused")
    if alg.upper().startswith("HS"):
        raise invalid_client(
            f"HMAC client assertions ({clip(alg)}) are refused: sign with the client's private key "
            "(RS384 or ES384)"
        )
    if alg not in ASSERTION_ALGS:
        raise invalid_client(
            f"The client assertion's alg {clip(alg)} is not supported; use one of "
            + ", ".join(ASSERTION_ALGS)
        )
    return alg


def _number(payload: Mapping[str, Any], name: str) -> int:
    value = payload[name]
    # bool is an int subclass; JSON true is not a NumericDate (RFC 7519 §2).
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid_client(f"The client assertion's {name} claim must be a number")
    return int(value)
