"""Signed URLs: a short-lived permission, carried in a URL, to read one version of one Binary.

``GET [base]/Binary/[id]/$signed-url`` (api/signed.py) answers a URL of the form

    [base]/Binary/[id]/_history/[vid]/$signed-content?sig=<compact JWS>

that serves that version's native bytes with no token until it expires (docs/api.md, "Signed
URLs"; docs/decisions.md#signed-urls). The signature is an ES256 JWT signed with the token
signing key that signs access tokens now (auth/keyring.py): the keys live in the catalogue, so
a URL made on one node verifies on every node, with no state of its own. Its claims bind
everything the URL promises:

- ``sub`` = ``Binary/<id>/_history/<vid>``: the id and version (a changed path names another
  subject and is refused);
- ``exp`` (and ``iat``): when it stops working, at most ``FHIRBIN_SIGNED_URL_TTL`` after it
  was made;
- ``client_id``: the client that asked for it, so the read it serves is audited as that
  client's;
- ``iss`` = ``aud`` = the base URL: this deployment's URL, for nobody else.

The header's ``typ`` (``fhirbin-signed-url+jwt``) keeps a signature from passing as an access
token and an access token from passing as a signature (RFC 8725 §3.11): both are signed with
the same keys. Pure: keys and times in, a :class:`SignedRead` or :class:`SignatureRefused` out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from fhirbin.auth.tokens import TokenIssuer
from fhirbin.errors import SignatureRefused

__all__ = [
    "CONTENT_OPERATION",
    "QUERY_NAME",
    "TYP",
    "SignedRead",
    "content_path",
    "is_content_path",
    "sign",
    "verify",
]

#: The last path segment of a URL a signature opens.
CONTENT_OPERATION = "$signed-content"
#: The one query parameter of that URL.
QUERY_NAME = "sig"
TYP = "fhirbin-signed-url+jwt"
_ALG = "ES256"
#: Clock skew allowed between the node that made a URL and the node that serves it, on ``iat``
#: and on the lifetime check only; ``exp`` is honoured to the second.
LEEWAY = 5
#: Longer ``sig`` values are refused before any parsing (ours are about 400 characters).
MAX_LENGTH = 2048
_REQUIRED = ("iss", "aud", "sub", "exp", "iat", "client_id")
_CONTENT_PATH = re.compile(r"/Binary/[^/]+/_history/[^/]+/" + re.escape(CONTENT_OPERATION))
_ALTERED = "This signed URL is not valid (it was altered or not made by this server)."


@dataclass(frozen=True)
class SignedRead:
    """What a verified signature allows: reading ``version`` of ``binary_id`` until
    ``expires_at`` (Unix seconds), on behalf of ``client_id``."""

    binary_id: str
    version: int
    client_id: str
    expires_at: int


def subject(binary_id: str, version: int) -> str:
    return f"Binary/{binary_id}/_history/{version}"


def content_path(binary_id: str, version: int) -> str:
    """The path, relative to the FHIR base, that a signature for this version opens."""
    return f"/{subject(binary_id, version)}/{CONTENT_OPERATION}"


def is_content_path(relative: str) -> bool:
    """Whether ``relative`` (a path relative to the FHIR base) is one a signature opens: the
    one path a request may reach without a Bearer token to read content."""
    return _CONTENT_PATH.fullmatch(relative) is not None


def sign(
    issuer: TokenIssuer,
    *,
    base_url: str,
    binary_id: str,
    version: int,
    client_id: str,
    ttl: int,
    now: int,
) -> tuple[str, int]:
    """The ``sig`` value for reading ``version`` of ``binary_id`` and its expiry (Unix s)."""
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    expires = now + ttl
    claims: dict[str, Any] = {
        "iss": base_url,
        "aud": base_url,
        "sub": subject(binary_id, version),
        "iat": now,
        "exp": expires,
        "client_id": client_id,
    }
    return issuer.sign(claims, typ=TYP), expires


def verify(
    sig: str,
    keys: Mapping[str, ec.EllipticCurvePublicKey],
    *,
    base_url: str,
    binary_id: str,
    version: int,
    max_lifetime: int,
    now: int,
) -> SignedRead:
    """The read ``sig`` allows on ``version`` of ``binary_id``, or SignatureRefused.

    Every failure but expiry gets the same words: telling a forger which check failed helps
    only the forger.
    """
    if len(sig) > MAX_LENGTH:
        raise SignatureRefused(_ALTERED)
    try:
        header = jwt.get_unverified_header(sig)
    except jwt.InvalidTokenError:
        raise SignatureRefused(_ALTERED) from None
    # The algorithm and type are checked before a key is touched (RFC 8725 §3.1, §3.11).
    kid = header.get("kid")
    key = keys.get(kid) if isinstance(kid, str) else None
    if header.get("alg") != _ALG or header.get("typ") != TYP or key is None:
        raise SignatureRefused(_ALTERED)
    try:
        claims = jwt.decode(
            sig,
            key,
            algorithms=[_ALG],
            audience=base_url,
            issuer=base_url,
            options={"require": list(_REQUIRED), "verify_exp": False, "verify_iat": False},
        )
    except jwt.InvalidTokenError:
        raise SignatureRefused(_ALTERED) from None
    expires, issued, client_id = claims["exp"], claims["iat"], claims["client_id"]
    if (
        claims["sub"] != subject(binary_id, version)
        or not isinstance(client_id, str)
        or not _is_time(expires)
        or not _is_time(issued)
    ):
        raise SignatureRefused(_ALTERED)
    # Made (on this node's clock) in the future, or living longer than this server makes them:
    # not made by this server as configured (a misused key cannot mint lasting URLs).
    longest = max_lifetime + LEEWAY
    if issued > now + LEEWAY or expires - issued > longest or expires - now > longest:
        raise SignatureRefused(_ALTERED)
    if now >= expires:
        raise SignatureRefused("This signed URL has expired; ask for a new one with $signed-url.")
    return SignedRead(binary_id, version, client_id, int(expires))


def _is_time(value: object) -> bool:
    # bool is an int subclass; JSON true is not a NumericDate (RFC 7519 §2).
    return isinstance(value, int) and not isinstance(value, bool)
