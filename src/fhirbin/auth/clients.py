"""OAuth clients at the token endpoint: identifiers, secrets and request checks.

This module owns how client ids and secrets are generated and stored (SHA-256 of the
server-generated secret, never the secret; argon2id hashes of older clients still verify), how a
token request authenticates its client with a secret (RFC 6749 §2.3.1: ``client_secret_basic``
or ``client_secret_post``; ``private_key_jwt`` is ``auth.assertions``) and which token requests
are acceptable at all (RFC 6749 §4.4.2 ``client_credentials``, the SMART Backend Services
flow). Errors are RFC 6749 §5.2 OAuthErrors.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote_plus

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.profiles import RFC_9106_LOW_MEMORY

from fhirbin.errors import OAuthError

__all__ = [
    "ClientCredentials",
    "check_token_request",
    "hash_secret",
    "new_client_id",
    "new_client_secret",
    "parse_client_credentials",
    "verify_secret",
]

# Clients registered before secrets were stored as SHA-256 have argon2id hashes (t=3, m=64 MiB,
# p=4: RFC 9106 §4's second recommended option); they keep verifying with these parameters.
_HASHER = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)
#: The prefix of the stored form of new secrets: ``sha256$`` + base64url(SHA-256(secret)).
SHA256_PREFIX = "sha256$"


def new_client_id() -> str:
    """A fresh client id: 128 random bits, URL-safe base64 (no ``:``, where Basic splits)."""
    return secrets.token_urlsafe(16)


def new_client_secret() -> str:
    """A fresh client secret: 256 random bits, URL-safe base64."""
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """What to store instead of ``secret``: ``sha256$`` and the base64url SHA-256 of it.

    Client secrets are made by the server (:func:`new_client_secret`, 256 random bits), never
    chosen by people: nobody can guess one or look it up in a table of hashes, so a slow
    password hash adds nothing but time to every token request (argon2id took 0.2-0.5 s of a
    core). SHA-256 keeps a stolen database from revealing the secrets themselves.
    """
    digest = hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()
    return SHA256_PREFIX + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify_secret(secret_hash: str | None, secret: str) -> bool:
    """Whether ``secret`` matches ``secret_hash``; False for an unknown client (``None``).

    New hashes (``sha256$``) are compared in constant time; argon2id hashes of clients
    registered before are still verified, at argon2's cost. An unknown client, or a stored
    hash that is neither, costs one SHA-256 comparison like a new client, so response time
    does not tell whether a client id exists (a client with an old argon2 hash is slower).
    """
    if secret_hash is not None and secret_hash.startswith(SHA256_PREFIX):
        return hmac.compare_digest(hash_secret(secret), secret_hash)
    if secret_hash is not None and secret_hash.startswith("$argon2"):
        try:
            return _HASHER.verify(secret_hash, secret)
        except (VerificationError, InvalidHashError):  # mismatch or corrupt
            return False
    hmac.compare_digest(hash_secret(secret), _dummy_hash())
    return False


@functools.cache
def _dummy_hash() -> str:
    return hash_secret(secrets.token_urlsafe(32))


@dataclass(frozen=True)
class ClientCredentials:
    """What the client presented; ``method`` is "client_secret_basic" or "client_secret_post"."""

    client_id: str
    client_secret: str
    method: str


def parse_client_credentials(
    authorization: str | None, form: Mapping[str, str]
) -> ClientCredentials:
    """Extract the client's id and secret from a token request (RFC 6749 §2.3.1).

    Raises OAuthError ``invalid_client`` (401) when there are no usable credentials and
    ``invalid_request`` (400) when the client used more than one method (RFC 6749 §2.3: the
    client MUST NOT use more than one authentication method in each request).
    """
    if "client_assertion" in form or "client_assertion_type" in form:
        # private_key_jwt requests are authenticated by fhirbin.auth.assertions; the token
        # endpoint never sends them here, and a secret cannot stand in for an assertion.
        raise OAuthError(
            "invalid_client",
            "client_assertion and client_assertion_type belong to private_key_jwt, which is "
            "not authenticated with a client secret",
            status=401,
        )
    has_basic = authorization is not None and authorization.strip() != ""
    if has_basic and "client_secret" in form:
        raise OAuthError(
            "invalid_request",
            "Client credentials were sent both in the Authorization header and in the body; "
            "use one method",
        )
    if authorization is not None and has_basic:
        client_id, secret = _parse_basic(authorization)
        # A client_id parameter alongside Basic is tolerated (RFC 6749 §3.2.1 lets clients send
        # it) but it must name the same client.
        if "client_id" in form and form["client_id"] != client_id:
            raise OAuthError(
                "invalid_request", "client_id in the body differs from the Authorization header"
            )
        return ClientCredentials(client_id, secret, "client_secret_basic")
    client_id = form.get("client_id", "")
    secret = form.get("client_secret", "")
    if not client_id or not secret:
        raise OAuthError(
            "invalid_client",
            "Client authentication is required: HTTP Basic (client_secret_basic) or "
            "client_id and client_secret in the body (client_secret_post)",
            status=401,
        )
    return ClientCredentials(client_id, secret, "client_secret_post")


def check_token_request(form: Mapping[str, str]) -> str:
    """Validate the grant of a token request; return its requested scope ("" = all registered).

    RFC 6749 §5.2: a missing parameter is ``invalid_request``; a grant type other than
    ``client_credentials`` (§4.4.2, the only one fhirbin serves) is ``unsupported_grant_type``.
    """
    grant_type = form.get("grant_type")
    if not grant_type:
        raise OAuthError("invalid_request", "grant_type is required (client_credentials)")
    if grant_type != "client_credentials":
        raise OAuthError(
            "unsupported_grant_type", "Only grant_type=client_credentials is supported"
        )
    return form.get("scope", "")


def _parse_basic(authorization: str) -> tuple[str, str]:
    """Decode ``Basic base64(urlencode(id):urlencode(secret))`` (RFC 6749 §2.3.1, RFC 7617)."""
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":  # auth schemes are case-insensitive (RFC 9110 §11.1)
        raise _bad_basic("the Authorization header must use the Basic scheme")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _bad_basic("the Basic credentials are not valid base64 of UTF-8 text") from None
    raw_id, colon, raw_secret = decoded.partition(":")
    if not colon:
        raise _bad_basic("the Basic credentials lack the ':' between client id and secret")
    try:
        # RFC 6749 §2.3.1: both parts are form-urlencoded before being joined, so a ':' inside
        # the secret arrives as %3A and the first ':' is always the separator.
        client_id = unquote_plus(raw_id, errors="strict")
        secret = unquote_plus(raw_secret, errors="strict")
    except UnicodeDecodeError:
        raise _bad_basic("the Basic credentials are not valid percent-encoded UTF-8") from None
    if not client_id or not secret:
        raise _bad_basic("the Basic credentials need a non-empty client id and secret")
    return client_id, secret


def _bad_basic(reason: str) -> OAuthError:
    return OAuthError("invalid_client", f"Malformed client authentication: {reason}", status=401)
