"""The signature of a signed URL (auth/signed_urls.py): what it binds and what it refuses."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from fhirbin.auth import signed_urls
from fhirbin.auth.tokens import TokenIssuer
from fhirbin.errors import SignatureRefused

BASE = "https://fhir.example.org/fhir"
NOW = 1_800_000_000
TTL = 300


@pytest.fixture
def issuer() -> TokenIssuer:
    return TokenIssuer(ec.generate_private_key(ec.SECP256R1()), issuer=BASE)


def make(issuer: TokenIssuer, *, version: int = 3, ttl: int = TTL, now: int = NOW) -> str:
    sig, expires = signed_urls.sign(
        issuer,
        base_url=BASE,
        binary_id="abc",
        version=version,
        client_id="client-1",
        ttl=ttl,
        now=now,
    )
    assert expires == now + ttl
    return sig


def check(issuer: TokenIssuer, sig: str, *, version: int = 3, now: int = NOW) -> Any:
    return signed_urls.verify(
        sig,
        issuer.public_keys,
        base_url=BASE,
        binary_id="abc",
        version=version,
        max_lifetime=TTL,
        now=now,
    )


def forge(issuer: TokenIssuer, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A JWS with the given header and claims, signed with ``issuer``'s key."""
    key = issuer._key  # the server's own key: only the claims make these wrong
    return jwt.encode(claims, key, algorithm="ES256", headers=header)


def claims(**changes: Any) -> dict[str, Any]:
    base = {
        "iss": BASE,
        "aud": BASE,
        "sub": "Binary/abc/_history/3",
        "iat": NOW,
        "exp": NOW + TTL,
        "client_id": "client-1",
    }
    return {**base, **changes}


def test_a_signature_allows_reading_its_version_until_it_expires(issuer: TokenIssuer) -> None:
    grant = check(issuer, make(issuer))
    assert grant == signed_urls.SignedRead("abc", 3, "client-1", NOW + TTL)
    assert check(issuer, make(issuer), now=NOW + TTL - 1).version == 3
    with pytest.raises(SignatureRefused, match="expired"):
        check(issuer, make(issuer), now=NOW + TTL)  # exp is honoured to the second


def test_it_is_bound_to_the_id_and_version(issuer: TokenIssuer) -> None:
    with pytest.raises(SignatureRefused):
        check(issuer, make(issuer), version=4)
    with pytest.raises(SignatureRefused):
        signed_urls.verify(
            make(issuer),
            issuer.public_keys,
            base_url=BASE,
            binary_id="abd",
            version=3,
            max_lifetime=TTL,
            now=NOW,
        )


def test_another_key_or_deployment_is_refused(issuer: TokenIssuer) -> None:
    stranger = TokenIssuer(ec.generate_private_key(ec.SECP256R1()), issuer=BASE)
    with pytest.raises(SignatureRefused):
        check(issuer, make(stranger))  # an unknown kid
    with pytest.raises(SignatureRefused):
        check(
            issuer,
            forge(
                issuer,
                {"typ": signed_urls.TYP, "kid": issuer.kid},
                claims(aud="https://other.example.org/fhir"),
            ),
        )


@pytest.mark.parametrize(
    "header",
    [
        {"typ": "at+jwt"},  # an access token is not a signature
        {"typ": "JWT"},
        {},
    ],
)
def test_only_the_signed_url_type_is_accepted(issuer: TokenIssuer, header: dict[str, str]) -> None:
    with pytest.raises(SignatureRefused):
        check(issuer, forge(issuer, {**header, "kid": issuer.kid}, claims()))


def test_the_none_algorithm_and_hmac_are_refused(issuer: TokenIssuer) -> None:
    def segment(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    unsigned = f"{segment({'alg': 'none', 'typ': signed_urls.TYP, 'kid': issuer.kid})}."
    unsigned += f"{segment(claims())}."
    with pytest.raises(SignatureRefused):
        check(issuer, unsigned)
    hmac = jwt.encode(
        claims(),
        "a shared secret of enough length!",
        algorithm="HS256",
        headers={"typ": signed_urls.TYP, "kid": issuer.kid},
    )
    with pytest.raises(SignatureRefused):
        check(issuer, hmac)


@pytest.mark.parametrize(
    "changes",
    [
        {"iat": NOW + 60},  # made in the future
        {"exp": NOW + 3600},  # lives longer than the server makes them
        {"iat": NOW - 3000, "exp": NOW + 200},
        {"client_id": 7},
        {"exp": True},
        {"exp": "soon"},
    ],
    ids=str,
)
def test_claims_the_server_never_makes_are_refused(
    issuer: TokenIssuer, changes: dict[str, Any]
) -> None:
    with pytest.raises(SignatureRefused):
        check(issuer, forge(issuer, {"typ": signed_urls.TYP, "kid": issuer.kid}, claims(**changes)))


def test_a_missing_claim_or_garbage_is_refused(issuer: TokenIssuer) -> None:
    partial = claims()
    del partial["client_id"]
    for sig in [
        forge(issuer, {"typ": signed_urls.TYP, "kid": issuer.kid}, partial),
        "x.y.z",
        "",
        "a" * 5000,
    ]:
        with pytest.raises(SignatureRefused):
            check(issuer, sig)


def test_the_issuer_will_not_sign_an_access_token_type(issuer: TokenIssuer) -> None:
    with pytest.raises(ValueError, match="issue"):
        issuer.sign(claims(), typ="at+jwt")


def test_the_content_path_is_the_only_one_let_through() -> None:
    assert signed_urls.content_path("abc", 3) == "/Binary/abc/_history/3/$signed-content"
    assert signed_urls.is_content_path("/Binary/abc/_history/3/$signed-content")
    for other in [
        "/Binary/abc/_history/3",
        "/Binary/abc/_history/3/$signed-content/",
        "/Binary/abc/_history/3/$signed-url",
        "/Binary/abc/$signed-content",
        "/Binary/a/b/_history/3/$signed-content",
        "/AuditEvent/abc/_history/3/$signed-content",
    ]:
        assert not signed_urls.is_content_path(other), other
