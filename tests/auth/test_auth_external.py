"""External JWTs and introspection answers (fhirbin.auth.external, fhirbin.auth.jose)."""

from __future__ import annotations

from typing import Any

import pytest

from fhirbin.auth.external import (
    ExternalClaims,
    check_external_header,
    claims_from_introspection,
    verify_external_jwt,
)
from fhirbin.auth.jose import peek
from fhirbin.auth.jwks import PublicJwk, parse_jwks, select_key
from fhirbin.errors import Unauthorized
from tests.providers.support import (
    EC_P384,
    RSA_KEY,
    RSA_KEY_2,
    PrivateKey,
    bad_signature,
    hmac_with_public_key,
    jwk,
    jwks,
    sign,
    unsigned,
)

NOW = 1_700_000_000
ISSUER = "https://idp.example.org/realms/health"
AUD = "https://fhir.example.org/fhir"


def claims(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUD,
        "exp": NOW + 300,
        "iat": NOW,
        "azp": "portal",
        "sub": "user-7",
        "scope": "system/Binary.rs",
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def key_for(private: PrivateKey = RSA_KEY, alg: str = "RS256") -> PublicJwk:
    return select_key(parse_jwks(jwks(jwk(private, "k1")), strict=False), "k1", alg)


def check(token: str, *, key: PublicJwk | None = None, now: int = NOW) -> Any:
    jws = peek(token)
    assert jws is not None
    alg, _ = check_external_header(jws)
    entry = verify_external_jwt(token, key or key_for(alg=alg), alg, issuer=ISSUER)
    return entry.check(AUD, now)


def refused(token: str, reason: str, **kwargs: Any) -> None:
    with pytest.raises(Unauthorized) as info:
        check(token, **kwargs)
    assert info.value.error == "invalid_token"
    assert reason in info.value.diagnostics


def test_peek_tells_jwts_from_opaque_tokens() -> None:
    token = sign(claims(), RSA_KEY, "RS256", "k1")
    jws = peek(token)
    assert jws is not None
    assert jws.issuer == ISSUER
    assert jws.alg == "RS256"
    for opaque in ("2YotnFZFEjr1zCsicMWpAA", "a.b.c", "a.b", "e30.e30.e30.e30", "W10.W10.x"):
        assert peek(opaque) is None


def test_a_good_token() -> None:
    got = check(sign(claims(patient="123", jti="j"), RSA_KEY, "RS256", "k1"))
    assert got.client_id == "portal"
    assert got.subject == "user-7"
    assert got.scope == "system/Binary.rs"
    assert got.patient == "123"
    assert got.audience == AUD
    assert got.issuer == ISSUER
    assert got.expires_at == NOW + 300
    assert got.jti == "j"


@pytest.mark.parametrize(("private", "alg"), [(RSA_KEY, "PS256"), (EC_P384, "ES384")])
def test_other_algorithms(private: PrivateKey, alg: str) -> None:
    assert check(sign(claims(), private, alg, "k1"), key=key_for(private, alg)).client_id


@pytest.mark.parametrize(
    ("extra", "scope"),
    [
        (
            {"scope": None, "scp": ["system/Binary.r", "system/Binary.s"]},
            "system/Binary.r system/Binary.s",
        ),
        ({"scope": None, "scp": "system/Binary.rs"}, "system/Binary.rs"),
        ({"scope": None}, ""),
        ({"scp": ["ignored"]}, "system/Binary.rs"),  # scope wins
    ],
)
def test_scopes_from_scope_or_scp(extra: dict[str, Any], scope: str) -> None:
    assert check(sign(claims(**extra), RSA_KEY, "RS256", "k1")).scope == scope


@pytest.mark.parametrize(
    ("extra", "client"),
    [
        ({"client_id": "c", "azp": "a", "cid": "o"}, "c"),
        ({"azp": "a", "cid": "o"}, "a"),
        ({"azp": None, "cid": "o"}, "o"),
        ({"azp": None}, "user-7"),
    ],
)
def test_client_id_precedence(extra: dict[str, Any], client: str) -> None:
    assert check(sign(claims(**extra), RSA_KEY, "RS256", "k1")).client_id == client


def test_no_client_at_all() -> None:
    refused(sign(claims(azp=None, sub=None), RSA_KEY, "RS256", "k1"), "names no client")


def test_expired() -> None:
    refused(sign(claims(exp=NOW - 6), RSA_KEY, "RS256", "k1"), "expired")
    assert check(sign(claims(exp=NOW - 4), RSA_KEY, "RS256", "k1")).client_id


def test_not_yet_valid() -> None:
    refused(sign(claims(nbf=NOW + 60), RSA_KEY, "RS256", "k1"), "not valid yet (nbf)")
    assert check(sign(claims(nbf=NOW + 4), RSA_KEY, "RS256", "k1")).client_id


def test_issued_in_the_future() -> None:
    refused(sign(claims(iat=NOW + 60), RSA_KEY, "RS256", "k1"), "issued in the future")


def test_iat_is_optional() -> None:
    assert check(sign(claims(iat=None), RSA_KEY, "RS256", "k1")).issued_at == 0


def test_wrong_issuer() -> None:
    refused(sign(claims(iss="https://evil.example"), RSA_KEY, "RS256", "k1"), "issuer")


def test_wrong_audience() -> None:
    refused(sign(claims(aud="https://other.example/fhir"), RSA_KEY, "RS256", "k1"), "aud")
    assert check(sign(claims(aud=["x", AUD]), RSA_KEY, "RS256", "k1")).audience == AUD


@pytest.mark.parametrize("name", ["exp", "aud", "iss"])
def test_required_claims(name: str) -> None:
    refused(sign(claims(**{name: None}), RSA_KEY, "RS256", "k1"), f"lacks the {name} claim")


def test_bad_signature() -> None:
    refused(bad_signature(sign(claims(), RSA_KEY, "RS256", "k1")), "signature is invalid")
    refused(sign(claims(), RSA_KEY_2, "RS256", "k1"), "signature is invalid")


def test_alg_none() -> None:
    refused(unsigned(claims(), kid="k1"), "alg none")


def test_hmac_signed_with_the_public_key() -> None:
    refused(hmac_with_public_key(claims(), RSA_KEY, "k1"), "HMAC")


def test_crit_header() -> None:
    refused(sign(claims(), RSA_KEY, "RS256", "k1", crit=["x"], x=1), "crit")


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"scope": ["a"]}, "scope claim"),
        ({"scope": None, "scp": [1]}, "scp claim"),
        ({"patient": 5}, "patient claim"),
        ({"exp": "tomorrow"}, "exp claim must be a number"),
        ({"aud": 5}, "aud claim is malformed"),
    ],
)
def test_malformed_claims(extra: dict[str, Any], reason: str) -> None:
    refused(sign(claims(**extra), RSA_KEY, "RS256", "k1"), reason)


def test_a_checked_entry_is_rechecked_on_each_use() -> None:
    token = sign(claims(), RSA_KEY, "RS256", "k1")
    jws = peek(token)
    assert jws is not None
    entry = verify_external_jwt(token, key_for(), "RS256", issuer=ISSUER)
    assert isinstance(entry, ExternalClaims)
    assert entry.check(AUD, NOW).client_id == "portal"
    with pytest.raises(Unauthorized, match="expired"):
        entry.check(AUD, NOW + 400)
    with pytest.raises(Unauthorized, match="aud"):
        entry.check("https://other.example", NOW)


# --- introspection answers (RFC 7662 §2.2) -----------------------------------------------------


def answer(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "active": True,
        "scope": "system/Binary.rs",
        "client_id": "gateway-app",
        "exp": NOW + 300,
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def test_active_answer() -> None:
    entry = claims_from_introspection(answer(patient="p1"), default_issuer="https://idp/introspect")
    got = entry.check(AUD, NOW)
    assert (got.client_id, got.scope, got.patient) == ("gateway-app", "system/Binary.rs", "p1")
    assert got.issuer == "https://idp/introspect"
    assert entry.audiences is None  # no aud stated: not restricted


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (answer(active=False), "not active"),
        (answer(active="true"), "not active"),
        ({"active": True}, "lacks exp"),
        (answer(exp=None), "lacks exp"),
        (answer(client_id=None), "names no client"),
        ([], "not a JSON object"),
        (answer(iss=5), "iss must be a string"),
    ],
)
def test_refused_answers(response: Any, reason: str) -> None:
    with pytest.raises(Unauthorized, match=reason):
        claims_from_introspection(response, default_issuer="x").check(AUD, NOW)


def test_answer_audience_is_checked_when_stated() -> None:
    entry = claims_from_introspection(answer(aud=["other"]), default_issuer="x")
    with pytest.raises(Unauthorized, match="aud"):
        entry.check(AUD, NOW)
    assert claims_from_introspection(answer(aud=AUD), default_issuer="x").check(AUD, NOW)


def test_answer_times_are_checked() -> None:
    with pytest.raises(Unauthorized, match="expired"):
        claims_from_introspection(answer(exp=NOW - 10), default_issuer="x").check(AUD, NOW)
    with pytest.raises(Unauthorized, match="nbf"):
        claims_from_introspection(answer(nbf=NOW + 10), default_issuer="x").check(AUD, NOW)
