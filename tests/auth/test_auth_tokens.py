"""Issuing and verifying access tokens (fhirbin.auth.tokens)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fhirbin.auth.tokens import AccessClaims, TokenIssuer, TokenVerifier
from fhirbin.errors import Unauthorized

ISSUER = "https://fhir.example.org/fhir"
AUD = "https://fhir.example.org/fhir"
NOW = 1_700_000_000
TTL = 300
KEY = ec.generate_private_key(ec.SECP256R1())


def _issuer(key: ec.EllipticCurvePrivateKey = KEY) -> TokenIssuer:
    return TokenIssuer(key, ISSUER)


def _verifier(**kwargs: Any) -> TokenVerifier:
    return TokenVerifier(_issuer().public_keys, ISSUER, **kwargs)


def _token(**overrides: Any) -> str:
    args: dict[str, Any] = {"audience": AUD, "client_id": "c1", "scope": "system/Binary.rs"}
    args.update(overrides)
    return _issuer().issue(ttl=TTL, now=NOW, **args)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "c1",
        "aud": AUD,
        "exp": NOW + TTL,
        "iat": NOW,
        "jti": "j1",
        "client_id": "c1",
        "scope": "system/Binary.rs",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(claims: dict[str, Any], key: Any = KEY, **header: Any) -> str:
    headers = {"typ": "at+jwt", "kid": _issuer().kid, **header}
    return jwt.encode(claims, key, algorithm="ES256", headers=headers)


def _refused(token: str, match: str, now: int = NOW, audience: str = AUD) -> None:
    with pytest.raises(Unauthorized, match=match) as info:
        _verifier().verify(token, audience, now=now)
    assert info.value.error == "invalid_token"
    assert info.value.status == 401


# --- issuing -------------------------------------------------------------------------------------


def test_issued_token_has_rfc9068_header_and_claims() -> None:
    token = _token()
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "ES256", "typ": "at+jwt", "kid": _issuer().kid}
    payload = json.loads(_unb64(token.split(".")[1]))
    assert payload.keys() == {"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"}
    assert (payload["iss"], payload["sub"], payload["aud"]) == (ISSUER, "c1", AUD)
    assert (payload["iat"], payload["exp"]) == (NOW, NOW + TTL)
    assert len(_unb64(payload["jti"])) == 16  # 128 random bits


def test_every_token_gets_a_fresh_jti() -> None:
    assert (
        len({jwt.decode(_token(), options={"verify_signature": False})["jti"] for _ in range(20)})
        == 20
    )


def test_issue_refuses_a_non_positive_ttl() -> None:
    with pytest.raises(ValueError, match="ttl"):
        _issuer().issue(audience=AUD, client_id="c1", scope="x", ttl=0)


def test_kid_is_the_rfc7638_thumbprint() -> None:
    issuer = _issuer()
    jwk = issuer.jwks()["keys"][0]
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    assert issuer.kid == _b64(hashlib.sha256(canonical.encode()).digest())
    assert issuer.kid != _issuer(ec.generate_private_key(ec.SECP256R1())).kid


def test_jwks_publishes_only_the_public_key() -> None:
    jwks = _issuer().jwks()
    assert len(jwks["keys"]) == 1
    jwk = jwks["keys"][0]
    assert jwk.keys() == {"kty", "crv", "x", "y", "kid", "use", "alg"}
    assert (jwk["kty"], jwk["crv"], jwk["use"], jwk["alg"]) == ("EC", "P-256", "sig", "ES256")
    public = jwt.PyJWK(jwk).key
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.public_numbers() == KEY.public_key().public_numbers()


# --- verifying: accepted -------------------------------------------------------------------------


def test_valid_token_yields_its_claims() -> None:
    token = _token(client_id="c9", scope="system/Binary.cud")
    claims = _verifier().verify(token, AUD, now=NOW + 1)
    assert claims == AccessClaims(
        client_id="c9",
        scope="system/Binary.cud",
        jti=claims.jti,
        issuer=ISSUER,
        audience=AUD,
        issued_at=NOW,
        expires_at=NOW + TTL,
        subject="c9",
    )


def test_token_verifies_with_the_real_clock_when_now_is_omitted() -> None:
    token = _issuer().issue(audience=AUD, client_id="c1", scope="s", ttl=60)
    assert _verifier().verify(token, AUD).client_id == "c1"


def test_audience_list_containing_ours_is_accepted() -> None:
    token = _signed(_claims(aud=["https://other.example", AUD]))
    assert _verifier().verify(token, AUD, now=NOW).audience == AUD


# --- verifying: refused --------------------------------------------------------------------------


def test_alg_none_token_is_refused() -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "at+jwt", "kid": _issuer().kid}).encode())
    payload = _b64(json.dumps(_claims()).encode())
    _refused(f"{header}.{payload}.", "ES256")


def test_hs256_token_keyed_with_the_public_key_pem_is_refused() -> None:
    # The classic algorithm-confusion attack: HMAC with the server's public key as secret.
    pem = KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": _issuer().kid}).encode())
    signing_input = f"{header}.{_b64(json.dumps(_claims()).encode())}"
    signature = _b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())
    _refused(f"{signing_input}.{signature}", "ES256")


def test_rs256_token_is_refused() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _refused(_signed(_claims(), rsa_key, alg="RS256"), "ES256")


def test_token_signed_by_another_key_with_our_kid_is_refused() -> None:
    _refused(_signed(_claims(), ec.generate_private_key(ec.SECP256R1())), "signature")


def test_tampered_payload_with_the_original_signature_is_refused() -> None:
    header, payload, signature = _token().split(".")
    claims = json.loads(_unb64(payload))
    claims["scope"] = "system/*.cruds"
    _refused(f"{header}.{_b64(json.dumps(claims).encode())}.{signature}", "signature")


def test_unknown_or_missing_kid_is_refused() -> None:
    _refused(_signed(_claims(), kid="someone-else"), "unknown key")
    token = jwt.encode(_claims(), KEY, algorithm="ES256", headers={"typ": "at+jwt"})
    _refused(token, "unknown key")


def test_token_without_at_jwt_typ_is_refused() -> None:
    _refused(_signed(_claims(), typ="JWT"), "typ")


def test_wrong_issuer_is_refused() -> None:
    _refused(_signed(_claims(iss="https://evil.example")), "iss")


def test_wrong_audience_is_refused() -> None:
    _refused(_token(audience="https://other.example/fhir"), "aud")


@pytest.mark.parametrize("claim", ["exp", "iat", "jti", "client_id", "scope", "iss", "aud"])
def test_token_missing_a_required_claim_is_refused(claim: str) -> None:
    _refused(_signed(_claims(**{claim: None})), claim)


@pytest.mark.parametrize(
    ("claim", "value"),
    [("scope", 7), ("client_id", ["c1"]), ("exp", True), ("iat", "now"), ("aud", [1])],
)
def test_token_with_a_mistyped_claim_is_refused(claim: str, value: object) -> None:
    with pytest.raises(Unauthorized):
        _verifier().verify(_signed(_claims(**{claim: value})), AUD, now=NOW)


def test_expired_beyond_the_leeway_is_refused_within_it_accepted() -> None:
    token = _token()
    _refused(token, "expired", now=NOW + TTL + 6)
    _refused(token, "expired", now=NOW + TTL + 5)
    assert _verifier().verify(token, AUD, now=NOW + TTL + 4).client_id == "c1"


def test_issued_in_the_future_beyond_the_leeway_is_refused() -> None:
    token = _token()
    _refused(token, "future", now=NOW - 6)
    assert _verifier().verify(token, AUD, now=NOW - 5).client_id == "c1"


def test_leeway_above_five_seconds_is_rejected() -> None:
    with pytest.raises(ValueError, match="leeway"):
        _verifier(leeway=6)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x", "e30.e30.e30"])
def test_non_jwt_is_refused(garbage: str) -> None:
    with pytest.raises(Unauthorized):
        _verifier().verify(garbage, AUD, now=NOW)


def test_oversized_token_is_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed an oversized token")

    monkeypatch.setattr(jwt, "get_unverified_header", explode)
    token = _token()
    _refused(token + "A" * (8193 - len(token)), "too long")


def test_diagnostics_do_not_echo_the_token() -> None:
    token = _token(audience="https://other.example")
    with pytest.raises(Unauthorized) as info:
        _verifier().verify(token, AUD, now=NOW)
    assert token not in info.value.diagnostics
    assert token not in info.value.headers["WWW-Authenticate"]


# --- cache ---------------------------------------------------------------------------------------


def _forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise AssertionError("signature checked again")

    monkeypatch.setattr(jwt, "decode", explode)


def test_cache_hit_skips_the_signature_check(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier, token = _verifier(), _token()
    first = verifier.verify(token, AUD, now=NOW)
    _forbid_decoding(monkeypatch)
    assert verifier.verify(token, AUD, now=NOW + 10) == first


def test_cache_hit_still_refuses_once_expired(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier, token = _verifier(), _token()
    verifier.verify(token, AUD, now=NOW)
    _forbid_decoding(monkeypatch)
    with pytest.raises(Unauthorized, match="expired"):
        verifier.verify(token, AUD, now=NOW + TTL + 6)


def test_cache_hit_still_refuses_another_audience(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier, token = _verifier(), _token()
    verifier.verify(token, AUD, now=NOW)
    _forbid_decoding(monkeypatch)
    with pytest.raises(Unauthorized, match="aud"):
        verifier.verify(token, "https://other.example/fhir", now=NOW)


def test_refused_tokens_are_not_cached() -> None:
    verifier, token = _verifier(), _token()
    with pytest.raises(Unauthorized):
        verifier.verify(token, AUD, now=NOW + TTL + 6)
    with pytest.raises(Unauthorized):
        verifier.verify(token, "https://other.example/fhir", now=NOW)
    assert verifier.verify(token, AUD, now=NOW).client_id == "c1"


def test_cache_evicts_the_oldest_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = _verifier(cache_size=2)
    first, second, third = _token(), _token(), _token()
    for token in (first, second, third):
        verifier.verify(token, AUD, now=NOW)
    _forbid_decoding(monkeypatch)
    verifier.verify(third, AUD, now=NOW)
    verifier.verify(second, AUD, now=NOW)
    with pytest.raises(AssertionError, match="checked again"):
        verifier.verify(first, AUD, now=NOW)


def test_knows_only_tokens_it_verified() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = TokenIssuer(key, issuer="https://fhir.example/fhir")
    verifier = TokenVerifier({issuer.kid: key.public_key()}, issuer="https://fhir.example/fhir")
    token = issuer.issue(
        audience="https://fhir.example/fhir", client_id="c", scope="system/Binary.r", ttl=60
    )
    assert not verifier.knows(token)
    verifier.verify(token, "https://fhir.example/fhir")
    assert verifier.knows(token)
    assert not verifier.knows(token + "x")


# --- the hot path's check: cached ----------------------------------------------------------------


def test_cached_knows_only_tokens_verified_before_and_still_good() -> None:
    verifier = _verifier()
    token = _issuer().issue(audience=AUD, client_id="c1", scope="system/Binary.rs", ttl=60)
    assert verifier.cached(token, AUD) is None  # never verified: never decoded here either
    claims = verifier.verify(token, AUD)
    assert verifier.cached(token, AUD) == claims
    assert verifier.cached(token, "https://other.example/fhir") is None
    assert verifier.cached(token + "x", AUD) is None


def test_cached_refuses_an_expired_token_without_raising() -> None:
    verifier = _verifier()
    token = _token()  # valid from NOW to NOW + TTL, long ago in real time
    verifier.verify(token, AUD, now=NOW + 1)
    assert verifier.knows(token)
    assert verifier.cached(token, AUD) is None


# --- own tokens that this server would never have issued ------------------------------------------


def test_a_future_nbf_is_refused_beyond_the_leeway() -> None:
    _refused(_signed(_claims(nbf=NOW + 60)), "not valid yet")
    _refused(_signed(_claims(nbf=NOW + 6)), "not valid yet")
    claims = _verifier().verify(_signed(_claims(nbf=NOW + 5)), AUD, now=NOW)  # clock skew
    assert claims.not_before == NOW + 5
    assert _verifier().verify(_signed(_claims(nbf=NOW - 10)), AUD, now=NOW).client_id == "c1"


def test_a_non_numeric_nbf_is_refused() -> None:
    _refused(_signed(_claims(nbf="soon")), "nbf claim must be a number")


def test_a_ten_year_token_is_refused() -> None:
    ten_years = 10 * 365 * 24 * 3600
    _refused(_signed(_claims(exp=NOW + ten_years)), "lives longer than the 300 s")


def test_a_token_with_more_life_left_than_issued_is_refused_whatever_its_iat() -> None:
    # iat set back so that exp - iat looks right, while exp is far away from now
    _refused(_signed(_claims(iat=NOW + 3000, exp=NOW + 3300)), "issued in the future")
    _refused(_signed(_claims(iat=NOW, exp=NOW + 3300)), "lives longer")


def test_the_lifetime_bound_is_the_issuers_ttl_plus_the_leeway() -> None:
    assert _verifier().verify(_signed(_claims(exp=NOW + 305)), AUD, now=NOW).client_id == "c1"
    _refused(_signed(_claims(exp=NOW + 306)), "lives longer")
    long_lived = TokenVerifier(_issuer().public_keys, ISSUER, max_lifetime=3600)
    token = _issuer().issue(audience=AUD, client_id="c1", scope="s", ttl=3600, now=NOW)
    assert long_lived.verify(token, AUD, now=NOW).expires_at == NOW + 3600
    _refused(token, "lives longer")  # the default verifier: 300 s
    with pytest.raises(ValueError, match="max_lifetime"):
        TokenVerifier(_issuer().public_keys, ISSUER, max_lifetime=0)
