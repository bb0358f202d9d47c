"""JWK Sets: parsing public keys and picking the one a JWS names (fhirbin.auth.jwks)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from fhirbin.auth.jwks import (
    AmbiguousKey,
    JwksError,
    KeyNotFound,
    parse_jwks,
    parse_jwks_text,
    select_key,
    validate_jwks_url,
)
from tests.providers.support import EC_P256, EC_P384, RSA_KEY, RSA_KEY_2, jwk, jwks


def test_rsa_and_ec_public_keys_parse() -> None:
    keys = parse_jwks(jwks(jwk(RSA_KEY, "r"), jwk(EC_P384, "e")), strict=True)
    assert [(k.kid, k.kty, k.crv) for k in keys] == [("r", "RSA", None), ("e", "EC", "P-384")]


def test_a_single_jwk_file_is_accepted_at_registration_only() -> None:
    text = json.dumps(jwk(EC_P384, "e"))
    assert len(parse_jwks_text(text, strict=True)) == 1
    with pytest.raises(JwksError, match="keys"):
        parse_jwks_text(text, strict=False)


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({**jwk(RSA_KEY, "r"), "d": "AQAB"}, "private"),
        ({"kty": "oct", "kid": "h", "k": "c2VjcmV0"}, "unsupported key type"),
        ({"kty": "OKP", "kid": "o", "crv": "Ed25519", "x": "AA"}, "unsupported key type"),
        ({k: v for k, v in jwk(RSA_KEY, "r").items() if k != "kid"}, "kid is required"),
        ({**jwk(RSA_KEY, "r"), "n": 5}, "n and e"),
        ({**jwk(EC_P384, "e"), "crv": "P-192"}, "curve"),
        ({**jwk(EC_P384, "e"), "x": jwk(EC_P256, "x")["x"]}, "EC public key"),
        ({**jwk(RSA_KEY, "r"), "alg": "HS256"}, "not a supported"),
        ({**jwk(RSA_KEY, "r"), "key_ops": "verify"}, "key_ops"),
        ("not a key", "JSON object"),
    ],
)
def test_strict_parsing_refuses_unusable_keys(entry: Any, reason: str) -> None:
    with pytest.raises(JwksError, match=reason):
        parse_jwks({"keys": [entry]}, strict=True)


def test_lenient_parsing_skips_unusable_keys() -> None:
    good = jwk(EC_P384, "e")
    keys = parse_jwks({"keys": [{"kty": "oct", "k": "c2VjcmV0"}, good, "junk"]}, strict=False)
    assert [k.kid for k in keys] == ["e"]


def test_small_rsa_keys_are_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    with pytest.raises(JwksError, match="1024 bits"):
        parse_jwks(jwks(jwk(small, "s")), strict=True)


def test_duplicate_kid_of_one_type_is_refused_at_registration() -> None:
    with pytest.raises(JwksError, match="share the kid"):
        parse_jwks(jwks(jwk(RSA_KEY, "k"), jwk(RSA_KEY_2, "k")), strict=True)
    # The same kid on keys of different types is unambiguous per alg.
    assert len(parse_jwks(jwks(jwk(RSA_KEY, "k"), jwk(EC_P384, "k")), strict=True)) == 2


@pytest.mark.parametrize(
    "document", [[], {"keys": {}}, {"key": []}, {"keys": []}, {"keys": [{}] * 101}]
)
def test_not_a_jwk_set(document: Any) -> None:
    with pytest.raises(JwksError):
        parse_jwks(document, strict=True)


def test_invalid_json() -> None:
    with pytest.raises(JwksError, match="JSON"):
        parse_jwks_text("{", strict=False)


def _keys(*entries: dict[str, Any]) -> Any:
    return parse_jwks(jwks(*entries), strict=False)


def test_select_by_kid_and_alg() -> None:
    keys = _keys(jwk(RSA_KEY, "k"), jwk(EC_P384, "k"), jwk(EC_P256, "p256"))
    assert select_key(keys, "k", "RS384").kty == "RSA"
    assert select_key(keys, "k", "ES384").kty == "EC"
    assert select_key(keys, "p256", "ES256").crv == "P-256"


def test_unknown_kid() -> None:
    with pytest.raises(KeyNotFound, match="no key with kid 'x'"):
        select_key(_keys(jwk(RSA_KEY, "k")), "x", "RS384")


@pytest.mark.parametrize(
    ("entry", "alg"),
    [
        (jwk(RSA_KEY, "k"), "ES384"),  # kty does not fit
        (jwk(EC_P256, "k"), "ES384"),  # curve does not fit the alg
        (jwk(RSA_KEY, "k", alg="RS256"), "RS384"),  # the JWK's alg restricts it
        (jwk(RSA_KEY, "k", use="enc"), "RS384"),  # an encryption key
        (jwk(RSA_KEY, "k", key_ops=["encrypt"]), "RS384"),
        (jwk(RSA_KEY, "k"), "HS256"),  # never an HMAC
        (jwk(RSA_KEY, "k"), "none"),
    ],
)
def test_a_key_that_does_not_fit_the_alg_is_not_found(entry: dict[str, Any], alg: str) -> None:
    with pytest.raises(KeyNotFound, match="can verify"):
        select_key(_keys(entry), "k", alg)


def test_several_fitting_keys_are_ambiguous() -> None:
    keys = _keys(jwk(RSA_KEY, "k"), jwk(RSA_KEY_2, "k"))
    with pytest.raises(AmbiguousKey, match="ambiguous"):
        select_key(keys, "k", "RS384")


def test_without_kid_exactly_one_fitting_key_is_needed() -> None:
    assert select_key(_keys(jwk(RSA_KEY, None), jwk(EC_P384, None)), None, "RS256").kty == "RSA"
    with pytest.raises(AmbiguousKey):
        select_key(_keys(jwk(RSA_KEY, "a"), jwk(RSA_KEY_2, "b")), None, "RS256")


@pytest.mark.parametrize(
    "url",
    [
        "https://keys.example.org/jwks.json",
        "http://127.0.0.1:8000/jwks",
        "http://localhost/jwks",
        "http://[::1]:9/jwks",
    ],
)
def test_valid_jwks_urls(url: str) -> None:
    assert validate_jwks_url(url) == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://keys.example.org/jwks.json", "https"),
        ("ftp://keys.example.org/jwks.json", "https"),
        ("/jwks.json", "https"),
        ("https://user:pw@keys.example.org/jwks", "credentials"),
        ("https://keys.example.org/jwks#x", "fragment"),
        ("https://[::1/jwks", "valid URL"),
    ],
)
def test_invalid_jwks_urls(url: str, reason: str) -> None:
    with pytest.raises(JwksError, match=reason):
        validate_jwks_url(url)
