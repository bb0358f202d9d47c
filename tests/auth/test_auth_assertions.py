"""Client assertions: RFC 7523 §3 as profiled by SMART (fhirbin.auth.assertions)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fhirbin.auth.assertions import (
    ASSERTION_TYPE,
    AssertionRequest,
    is_assertion_request,
    parse_assertion_request,
    verify_assertion,
)
from fhirbin.auth.jwks import JwksError, PublicJwk, parse_jwks, select_key
from fhirbin.errors import OAuthError
from tests.providers.support import (
    EC_P384,
    RSA_KEY,
    RSA_KEY_2,
    PrivateKey,
    b64,
    bad_signature,
    hmac_with_public_key,
    jwk,
    jwks,
    sign,
    unsigned,
)

NOW = 1_700_000_000
CLIENT = "client-1"
TOKEN_URL = "https://fhir.example.org/fhir/auth/token"


def claims(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "iss": CLIENT,
        "sub": CLIENT,
        "aud": TOKEN_URL,
        "exp": NOW + 240,
        "jti": "jti-1",
        "iat": NOW,
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def assertion(
    key: PrivateKey = RSA_KEY, alg: str = "RS384", kid: str | None = "k1", **overrides: Any
) -> str:
    return sign(claims(**overrides), key, alg, kid, typ="JWT")


def form(token: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": token,
        **extra,
    }


def refused(description: str, authorization: str | None = None, **form_values: str) -> None:
    with pytest.raises(OAuthError) as info:
        parse_assertion_request(authorization, form_values)
    assert info.value.error == "invalid_client"
    assert info.value.status == 401
    assert description in info.value.diagnostics


def key_for(private: PrivateKey, alg: str, kid: str = "k1") -> PublicJwk:
    return select_key(parse_jwks(jwks(jwk(private, kid)), strict=True), kid, alg)


def verify(token: str, key: PublicJwk | None = None, now: int = NOW) -> Any:
    request = parse_assertion_request(None, form(token))
    return verify_assertion(
        request, key or key_for(RSA_KEY, request.alg), token_endpoint=TOKEN_URL, now=now
    )


def verify_refused(token: str, description: str, **kwargs: Any) -> None:
    with pytest.raises(OAuthError) as info:
        verify(token, **kwargs)
    assert info.value.error == "invalid_client"
    assert info.value.status == 401
    assert description in info.value.diagnostics


def test_is_assertion_request() -> None:
    assert is_assertion_request({"client_assertion": "x"})
    assert is_assertion_request({"client_assertion_type": "x"})
    assert not is_assertion_request({"client_id": "x", "client_secret": "y"})


def test_a_good_assertion_parses_and_verifies() -> None:
    token = sign(claims(), RSA_KEY, "RS384", "k1", typ="JWT", jku="https://keys.example.org/jwks")
    request = parse_assertion_request(None, form(token, client_id=CLIENT))
    assert request == AssertionRequest(
        token, CLIENT, "RS384", "k1", "https://keys.example.org/jwks"
    )
    verified = verify(token)
    assert (verified.client_id, verified.jti, verified.expires_at) == (CLIENT, "jti-1", NOW + 240)


@pytest.mark.parametrize(
    ("private", "alg"),
    [
        (RSA_KEY, "RS384"),
        (EC_P384, "ES384"),
        (RSA_KEY, "RS256"),
        (RSA_KEY, "PS384"),
    ],
)
def test_accepted_algorithms(private: PrivateKey, alg: str) -> None:
    token = assertion(private, alg)
    assert verify(token, key_for(private, alg)).jti == "jti-1"


def test_audience_may_be_a_list_holding_the_token_endpoint() -> None:
    assert verify(assertion(aud=["https://other.example", TOKEN_URL])).jti == "jti-1"


def test_missing_typ_is_tolerated() -> None:
    token = sign(claims(), RSA_KEY, "RS384", "k1")
    assert verify(token).jti == "jti-1"


# --- refused before any key is looked up -------------------------------------------------------


def test_wrong_assertion_type() -> None:
    token = assertion()
    refused(
        "client_assertion_type must be",
        client_assertion=token,
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
    )
    refused("client_assertion_type must be", client_assertion=token)


def test_missing_assertion() -> None:
    refused("client_assertion (the signed JWT) is missing", client_assertion_type=ASSERTION_TYPE)


def test_assertion_with_another_method_is_refused() -> None:
    token = assertion()
    refused("Authorization header", "Basic eDp5", **form(token))
    refused("client_secret", **form(token, client_secret="s"))


def test_not_a_jwt() -> None:
    refused("not a JWT", **form("opaque-value"))
    refused("not a JWT", **form("a.b.c"))


def test_oversized_assertion() -> None:
    refused("longer than 8192", **form(assertion(padding="x" * 9000)))


def test_alg_none_is_refused() -> None:
    refused("alg none", **form(unsigned(claims(), kid="k1")))


def test_hmac_is_refused() -> None:
    refused("HMAC", **form(hmac_with_public_key(claims(), RSA_KEY, "k1")))


def test_unsupported_alg_is_refused() -> None:
    head = b64(json.dumps({"alg": "EdDSA", "kid": "k1"}).encode())
    body = b64(json.dumps(claims()).encode())
    refused("alg 'EdDSA' is not supported", **form(f"{head}.{body}.c2ln"))


def test_kid_is_required() -> None:
    refused("(kid)", **form(assertion(kid=None)))


def test_other_typ_is_refused() -> None:
    token = sign(claims(), RSA_KEY, "RS384", "k1", typ="at+jwt")
    refused("typ header must be JWT", **form(token))


def test_crit_is_refused() -> None:
    token = sign(claims(), RSA_KEY, "RS384", "k1", typ="JWT", crit=["exp"], exp=1)
    refused("crit", **form(token))


def test_jku_must_be_a_string() -> None:
    refused("jku", **form(sign(claims(), RSA_KEY, "RS384", "k1", jku=5)))


def test_iss_is_required() -> None:
    refused("lacks iss", **form(assertion(iss=None)))


def test_iss_must_equal_sub() -> None:
    refused("sub must equal its iss", **form(assertion(sub="someone-else")))


def test_form_client_id_must_match() -> None:
    refused("client_id differs", **form(assertion(), client_id="other"))


# --- refused by verification -------------------------------------------------------------------


def test_bad_signature() -> None:
    verify_refused(bad_signature(assertion()), "does not verify")


def test_signed_by_another_key() -> None:
    verify_refused(assertion(RSA_KEY_2), "does not verify")


def test_wrong_audience() -> None:
    verify_refused(assertion(aud="https://fhir.example.org/fhir"), "aud must be the token endpoint")


def test_missing_claims() -> None:
    verify_refused(assertion(exp=None), "lacks the exp claim")
    verify_refused(assertion(jti=None), "lacks the jti claim")
    verify_refused(assertion(aud=None), "lacks the aud claim")


def test_expired() -> None:
    verify_refused(assertion(exp=NOW - 6), "expired")
    # within the 5 s leeway: still fine
    assert verify(assertion(exp=NOW - 4)).jti == "jti-1"


def test_exp_more_than_five_minutes_ahead() -> None:
    verify_refused(assertion(exp=NOW + 306), "more than 5 minutes ahead")
    assert verify(assertion(exp=NOW + 300)).jti == "jti-1"


def test_not_yet_valid() -> None:
    verify_refused(assertion(nbf=NOW + 60), "not valid yet")


def test_issued_in_the_future() -> None:
    verify_refused(assertion(iat=NOW + 60), "issued in the future")


@pytest.mark.parametrize("value", [True, "soon"])
def test_times_must_be_numbers(value: Any) -> None:
    verify_refused(assertion(exp=value), "exp claim must be a number")


@pytest.mark.parametrize(
    ("jti", "reason"), [("", "jti must be"), ("x" * 256, "jti must be"), (7, "must be a string")]
)
def test_jti_must_be_a_short_string(jti: Any, reason: str) -> None:
    verify_refused(assertion(jti=jti), reason)


def test_echoed_header_values_are_clipped() -> None:
    long_kid = "k" * 5000
    token = sign(claims(), RSA_KEY, "RS384", long_kid, typ="JWT")
    request = parse_assertion_request(None, form(token))
    with pytest.raises(JwksError) as info:
        select_key(parse_jwks(jwks(jwk(RSA_KEY, "k1")), strict=True), request.kid, "RS384")
    assert len(str(info.value)) < 120
