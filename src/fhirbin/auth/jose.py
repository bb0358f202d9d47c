"""Looking inside a compact JWS before its signature is checked, to decide how to check it.

Pure. What this returns is UNVERIFIED: it only routes a token (whose issuer? which key?) and
is never trusted for anything else; every value used afterwards comes from a verified decode.
RFC 8725 §3.1: the algorithm is checked against an allow-list before any key is used.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["UnverifiedJws", "clip", "peek"]

# Three base64url segments (RFC 7515 §7.1); the signature may be empty only for alg "none",
# which is refused later with a clear message rather than treated as "not a JWT".
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


@dataclass(frozen=True)
class UnverifiedJws:
    """The protected header and the claims of a compact JWS, NOT verified."""

    header: dict[str, Any]
    claims: dict[str, Any]

    @property
    def alg(self) -> Any:
        return self.header.get("alg")

    @property
    def issuer(self) -> str | None:
        iss = self.claims.get("iss")
        return iss if isinstance(iss, str) else None


def peek(token: str) -> UnverifiedJws | None:
    """The header and claims of ``token`` if it is a compact JWS of a JSON object, else None.

    None means "not a JWT" (an opaque token, RFC 7662's case).
    """
    if not _COMPACT.fullmatch(token):
        return None
    header_b64, claims_b64, _ = token.split(".")
    header = _json_object(header_b64)
    claims = _json_object(claims_b64)
    if header is None or claims is None:
        return None
    return UnverifiedJws(header, claims)


def _json_object(segment: str) -> dict[str, Any] | None:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError):  # UnicodeDecodeError and JSONDecodeError included
        return None
    return value if isinstance(value, dict) else None


def clip(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters: for echoing untrusted header values in
    error descriptions without letting a sender fill the response header with them."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
