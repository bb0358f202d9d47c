"""Client ids, secrets and token-request checks (fhirbin.auth.clients)."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from urllib.parse import quote_plus

import pytest
from argon2 import PasswordHasher
from argon2.profiles import RFC_9106_LOW_MEMORY

from fhirbin.auth.clients import (
    ClientCredentials,
    check_token_request,
    hash_secret,
    new_client_id,
    new_client_secret,
    parse_client_credentials,
    verify_secret,
)
from fhirbin.errors import OAuthError

_URLSAFE = re.compile(r"[A-Za-z0-9_-]+")


def _basic(client_id: str, secret: str, *, encode: bool = True) -> str:
    if encode:
        client_id, secret = quote_plus(client_id), quote_plus(secret)
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def _oauth_error(
    authorization: str | None, form: dict[str, str], error: str, status: int
) -> OAuthError:
    with pytest.raises(OAuthError) as info:
        parse_client_credentials(authorization, form)
    assert (info.value.error, info.value.status) == (error, status)
    return info.value


# --- ids and secrets -----------------------------------------------------------------------------


def test_client_ids_are_random_urlsafe_and_at_least_128_bits() -> None:
    ids = {new_client_id() for _ in range(50)}
    assert len(ids) == 50
    for client_id in ids:
        assert _URLSAFE.fullmatch(client_id)
        assert len(client_id) * 6 >= 128
        assert ":" not in client_id


def test_client_secrets_are_random_urlsafe_and_at_least_256_bits() -> None:
    secrets_ = {new_client_secret() for _ in range(50)}
    assert len(secrets_) == 50
    for secret in secrets_:
        assert _URLSAFE.fullmatch(secret)
        assert len(secret) * 6 >= 256


def test_secret_hash_is_sha256_with_its_prefix_and_not_the_secret() -> None:
    secret = new_client_secret()
    hashed = hash_secret(secret)
    assert hashed.startswith("sha256$")
    digest = hashlib.sha256(secret.encode()).digest()
    assert hashed == "sha256$" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert secret not in hashed


def test_verify_secret_accepts_the_secret_and_nothing_else() -> None:
    hashed = hash_secret("s3cret")
    assert verify_secret(hashed, "s3cret") is True
    assert verify_secret(hashed, "s3cret ") is False
    assert verify_secret(hashed, "") is False
    assert verify_secret(hashed, "S3cret") is False


def test_a_new_secret_verifies_fast() -> None:
    secret = new_client_secret()
    hashed = hash_secret(secret)
    start = time.perf_counter()
    for _ in range(100):
        assert verify_secret(hashed, secret) is True
    assert (time.perf_counter() - start) / 100 < 0.005  # argon2id took 0.2-0.5 s


ARGON2_HASHER = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)


def test_an_old_argon2id_hash_still_verifies() -> None:
    secret = new_client_secret()
    old = ARGON2_HASHER.hash(secret)  # as stored for clients registered before sha256$
    assert old.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert verify_secret(old, secret) is True
    assert verify_secret(old, secret + "x") is False
    assert verify_secret(old, "") is False


@pytest.mark.parametrize(
    "stored", [None, "", "plaintext", "$argon2id$v=19$garbage", "sha256$", "sha256$AAAA"]
)
def test_verify_secret_is_false_for_unknown_client_or_corrupt_hash(stored: str | None) -> None:
    assert verify_secret(stored, "anything") is False


@pytest.mark.parametrize("stored", [None, "plaintext"])
def test_unknown_client_or_corrupt_hash_costs_a_sha256_comparison_not_an_argon2_one(
    stored: str | None,
) -> None:
    start = time.perf_counter()
    for _ in range(100):
        assert verify_secret(stored, "x") is False
    assert (time.perf_counter() - start) / 100 < 0.005


def test_unknown_client_takes_about_as_long_as_a_known_one() -> None:
    hashed = hash_secret("right")
    verify_secret(None, "warm-up")

    def best_of(stored: str | None) -> float:
        timings = []
        for _ in range(200):
            start = time.perf_counter()
            verify_secret(stored, "wrong")
            timings.append(time.perf_counter() - start)
        return min(timings)

    known, unknown = best_of(hashed), best_of(None)
    assert unknown > known / 3


# --- client authentication -----------------------------------------------------------------------


def test_basic_credentials_are_parsed() -> None:
    assert parse_client_credentials(_basic("c1", "s1"), {}) == ClientCredentials(
        "c1", "s1", "client_secret_basic"
    )


def test_basic_scheme_name_is_case_insensitive() -> None:
    creds = parse_client_credentials(_basic("c1", "s1").replace("Basic", "bAsIc"), {})
    assert creds.client_id == "c1"


def test_basic_secret_with_url_encoded_colon_is_decoded() -> None:
    header = _basic("c1", "a:b+c%d é")
    assert "%3A" in base64.b64decode(header.split()[1]).decode()
    creds = parse_client_credentials(header, {})
    assert (creds.client_id, creds.client_secret) == ("c1", "a:b+c%d é")


def test_basic_splits_at_the_first_colon_when_the_client_did_not_encode() -> None:
    creds = parse_client_credentials(_basic("c1", "a:b", encode=False), {})
    assert (creds.client_id, creds.client_secret) == ("c1", "a:b")


def test_basic_with_matching_client_id_in_the_body_is_accepted() -> None:
    creds = parse_client_credentials(_basic("c1", "s1"), {"client_id": "c1"})
    assert creds.method == "client_secret_basic"


def test_basic_with_a_different_client_id_in_the_body_is_invalid_request() -> None:
    _oauth_error(_basic("c1", "s1"), {"client_id": "c2"}, "invalid_request", 400)


def test_post_credentials_are_parsed() -> None:
    form = {"client_id": "c1", "client_secret": "s1", "grant_type": "client_credentials"}
    assert parse_client_credentials(None, form) == ClientCredentials(
        "c1", "s1", "client_secret_post"
    )


def test_both_methods_at_once_is_invalid_request() -> None:
    _oauth_error(
        _basic("c1", "s1"), {"client_id": "c1", "client_secret": "s1"}, "invalid_request", 400
    )


@pytest.mark.parametrize(
    "form",
    [{}, {"client_id": "c1"}, {"client_secret": "s1"}, {"client_id": "", "client_secret": "s"}],
)
def test_missing_credentials_are_invalid_client_401(form: dict[str, str]) -> None:
    error = _oauth_error(None, form, "invalid_client", 401)
    assert error.headers["WWW-Authenticate"].startswith("Basic ")


@pytest.mark.parametrize(
    "header",
    [
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b":secret").decode(),
        "Basic " + base64.b64encode(b"id:").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
        "Basic " + base64.b64encode(b"id:%ff").decode(),
        "Bearer abc.def.ghi",
        "Digest username=x",
    ],
)
def test_malformed_basic_header_is_invalid_client_401(header: str) -> None:
    _oauth_error(header, {}, "invalid_client", 401)


def test_blank_authorization_header_falls_back_to_the_body() -> None:
    creds = parse_client_credentials("  ", {"client_id": "c1", "client_secret": "s1"})
    assert creds.method == "client_secret_post"


@pytest.mark.parametrize("field", ["client_assertion", "client_assertion_type"])
def test_assertion_parameters_are_not_secret_credentials(field: str) -> None:
    error = _oauth_error(None, {field: "x", "client_id": "c1"}, "invalid_client", 401)
    assert "private_key_jwt" in error.diagnostics


# --- token request -------------------------------------------------------------------------------


def test_client_credentials_request_returns_its_scope() -> None:
    form = {"grant_type": "client_credentials", "scope": "system/Binary.rs"}
    assert check_token_request(form) == "system/Binary.rs"


def test_absent_scope_means_all_registered() -> None:
    assert check_token_request({"grant_type": "client_credentials"}) == ""


@pytest.mark.parametrize("form", [{}, {"grant_type": ""}, {"scope": "system/Binary.rs"}])
def test_missing_grant_type_is_invalid_request(form: dict[str, str]) -> None:
    with pytest.raises(OAuthError) as info:
        check_token_request(form)
    assert (info.value.error, info.value.status) == ("invalid_request", 400)


@pytest.mark.parametrize(
    "grant_type", ["authorization_code", "password", "refresh_token", "Client_Credentials"]
)
def test_other_grant_types_are_unsupported(grant_type: str) -> None:
    with pytest.raises(OAuthError) as info:
        check_token_request({"grant_type": grant_type})
    assert (info.value.error, info.value.status) == ("unsupported_grant_type", 400)
