"""SMART Backend Services over the real app: private_key_jwt at the token endpoint.

Keys by value and by URL (a real HTTP server on loopback serves the client's JWK Set), every
refusal of the attacker's matrix (replays, also after a restart and on another node), the
once-a-minute refetch rule with an injected clock, and the `client create --jwks-*` command.
"""

from __future__ import annotations

import functools
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import pytest
from click.testing import CliRunner
from starlette.applications import Starlette

from fhirbin.auth.assertions import ASSERTION_TYPE
from fhirbin.auth.clients import new_client_id
from fhirbin.cli import cli
from fhirbin.config import Settings
from fhirbin.metadata.base import Client
from fhirbin.metadata.sql import SqlMetadataStore
from fhirbin.runtime import build_authenticator
from tests.providers.support import (
    EC_P256,
    EC_P384,
    RSA_KEY,
    RSA_KEY_2,
    FakeClock,
    LoopbackServer,
    PrivateKey,
    bad_signature,
    closed_port_url,
    hmac_with_public_key,
    jwk,
    jwks,
    loopback_server,
    sign,
    unsigned,
)
from tests.support import ALL_SCOPES, BASE, register, runtime_of, serving

pytestmark = pytest.mark.anyio

TOKEN_URL = f"{BASE}/auth/token"
JWKS_PATH = "/client/jwks.json"


@pytest.fixture
def keyserver() -> Iterator[LoopbackServer]:
    with loopback_server() as running:
        yield running


async def register_keys(
    app: Starlette,
    *,
    keys: dict[str, Any] | None = None,
    url: str | None = None,
    scope: str = ALL_SCOPES,
) -> str:
    client_id = new_client_id()
    await runtime_of(app).catalogue.add_client(
        Client(
            client_id=client_id,
            name="backend",
            scope=scope,
            secret_hash="",
            created_at=datetime.now(UTC),
            jwks=None if keys is None else json.dumps(keys),
            jwks_url=url,
        )
    )
    return client_id


def claims(client_id: str, now: float | None = None, **overrides: Any) -> dict[str, Any]:
    at = int(time.time() if now is None else now)
    values: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "exp": at + 240,
        "iat": at,
        "jti": secrets.token_urlsafe(16),
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def assertion(
    client_id: str,
    key: PrivateKey = RSA_KEY,
    alg: str = "RS384",
    kid: str | None = "k1",
    now: float | None = None,
    headers: dict[str, Any] | None = None,
    **overrides: Any,
) -> str:
    return sign(claims(client_id, now, **overrides), key, alg, kid, typ="JWT", **(headers or {}))


async def ask(
    client: httpx.AsyncClient,
    token: str,
    scope: str = "system/Binary.rs",
    auth: tuple[str, str] | None = None,
    **extra: str,
) -> httpx.Response:
    data = {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": token,
        **extra,
    }
    if auth is None:
        return await client.post("/fhir/auth/token", data=data)
    return await client.post("/fhir/auth/token", data=data, auth=auth)


def assert_invalid_client(response: httpx.Response, reason: str) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["error"] == "invalid_client"
    assert reason in body["error_description"], body["error_description"]
    assert response.headers["cache-control"] == "no-store"


# --- the legitimate flows ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "alg"), [(RSA_KEY, "RS384"), (EC_P384, "ES384"), (RSA_KEY, "RS256"), (EC_P256, "ES256")]
)
async def test_keys_by_value_get_a_working_token(
    app: Starlette, client: httpx.AsyncClient, key: PrivateKey, alg: str
) -> None:
    client_id = await register_keys(app, keys=jwks(jwk(key, "k1")))
    response = await ask(client, assertion(client_id, key, alg), scope="system/Binary.rs")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["scope"] == "system/Binary.rs"
    assert body["expires_in"] == 300
    assert response.headers["cache-control"] == "no-store"
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await client.get("/fhir/Binary/none-such", headers=headers)).status_code == 404
    assert (await client.get("/fhir/Binary?_id=x", headers=headers)).status_code == 200


async def test_keys_by_url_with_matching_jku(
    app: Starlette, client: httpx.AsyncClient, keyserver: LoopbackServer
) -> None:
    keyserver.serve_json(JWKS_PATH, jwks(jwk(EC_P384, "k1")), **{"Cache-Control": "max-age=300"})
    url = keyserver.url(JWKS_PATH)
    client_id = await register_keys(app, url=url)
    first = await ask(client, assertion(client_id, EC_P384, "ES384", headers={"jku": url}))
    assert first.status_code == 200, first.text
    second = await ask(client, assertion(client_id, EC_P384, "ES384"), client_id=client_id)
    assert second.status_code == 200, second.text
    assert keyserver.hits(JWKS_PATH) == 1  # cached per Cache-Control
    assert keyserver.seen[0].headers["accept"] == "application/json"


async def test_the_token_carries_only_granted_scopes(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    client_id = await register_keys(app, keys=jwks(jwk(RSA_KEY, "k1")), scope="system/Binary.rs")
    response = await ask(client, assertion(client_id), scope="system/Binary.cruds")
    assert response.json()["scope"] == "system/Binary.rs"
    refused = await ask(client, assertion(client_id), scope="system/Patient.r")
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_scope"


async def test_smart_configuration_advertises_private_key_jwt(client: httpx.AsyncClient) -> None:
    config = (await client.get("/fhir/.well-known/smart-configuration")).json()
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
    assert config["token_endpoint_auth_signing_alg_values_supported"][:2] == ["RS384", "ES384"]
    assert "none" not in config["token_endpoint_auth_signing_alg_values_supported"]
    assert not any(
        a.startswith("HS") for a in config["token_endpoint_auth_signing_alg_values_supported"]
    )
    assert "client-confidential-asymmetric" in config["capabilities"]


# --- the attacker's matrix: every failure is 401 invalid_client --------------------------------


async def test_replayed_assertion_is_refused(app: Starlette, client: httpx.AsyncClient) -> None:
    client_id = await register_keys(app, keys=jwks(jwk(RSA_KEY, "k1")))
    token = assertion(client_id)
    assert (await ask(client, token)).status_code == 200
    assert_invalid_client(await ask(client, token), "already used")


async def test_a_jti_is_single_use_even_in_a_new_assertion(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    client_id = await register_keys(app, keys=jwks(jwk(RSA_KEY, "k1")))
    assert (await ask(client, assertion(client_id, jti="fixed"))).status_code == 200
    assert_invalid_client(await ask(client, assertion(client_id, jti="fixed")), "already used")
    # jtis are per client: another client may use the same value.
    other = await register_keys(app, keys=jwks(jwk(RSA_KEY, "k1")))
    assert (await ask(client, assertion(other, jti="fixed"))).status_code == 200


async def test_replay_is_refused_after_a_restart_and_on_another_node(settings: Settings) -> None:
    async with serving(settings) as (first, http):
        client_id = await register_keys(first, keys=jwks(jwk(RSA_KEY, "k1")))
        token = assertion(client_id)
        assert (await ask(http, token)).status_code == 200
        # A second server node on the same database, with nothing in memory.
        async with serving(settings) as (_, other_node):
            assert_invalid_client(await ask(other_node, token), "already used")
    # Every node stopped; the store is opened anew ("restart").
    async with serving(settings) as (_, restarted):
        assert_invalid_client(await ask(restarted, token), "already used")


async def test_jti_records_survive_in_the_database(settings: Settings, tmp_path: Path) -> None:
    async with serving(settings) as (app, http):
        client_id = await register_keys(app, keys=jwks(jwk(RSA_KEY, "k1")))
        assert (await ask(http, assertion(client_id, jti="kept"))).status_code == 200
    store = await SqlMetadataStore.open(settings.catalogue_url)
    try:
        later = datetime.fromtimestamp(time.time() + 600, UTC)
        assert not await store.remember_jti(client_id, "kept", later)
        assert await store.remember_jti(client_id, "fresh", later)
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"aud": f"{BASE}"}, "aud must be the token endpoint"),
        ({"aud": "https://elsewhere.example/auth/token"}, "aud must be the token endpoint"),
        ({"exp_in": 400}, "more than 5 minutes ahead"),
        ({"exp_in": -30}, "expired"),
        ({"nbf_in": 120}, "not valid yet"),
        ({"sub": "someone-else"}, "sub must equal its iss"),
        ({"jti": None}, "lacks the jti claim"),
        ({"exp": None}, "lacks the exp claim"),
    ],
)
async def test_bad_claims_are_refused(
    app: Starlette, client: httpx.AsyncClient, overrides: dict[str, Any], reason: str
) -> None:
    client_id = await register_keys(app, keys=jwks(jwk(RSA_KEY, "k1")))
    now = int(time.time())
    values = dict(overrides)
    if "exp_in" in values:
        values["exp"] = now + values.pop("exp_in")
    if "nbf_in" in values:
        values["nbf"] = now + values.pop("nbf_in")
    assert_invalid_client(await ask(client, assertion(client_id, now=now, **values)), reason)


async def test_unknown_kid_by_value(app: Starlette, client: httpx.AsyncClient) -> None:
    client_id = await register_keys(app, keys=jwks(jwk(RSA_KEY, "k1")))
    assert_invalid_client(await ask(client, assertion(client_id, kid="k9")), "no key with kid")


async def test_kid_naming_a_key_of_another_type(app: Starlette, client: httpx.AsyncClient) -> None:
    client_id = await register_keys(app, keys=jwks(jwk(EC_P384, "k1")))
    assert_invalid_client(await ask(client, assertion(client_id, RSA_KEY, "RS384")), "RS384")


async def test_several_matching_keys(app: Starlette, client: httpx.AsyncClient) -> None:
    client_id = await register_keys(app, keys=jwks(jwk(RSA_KEY, "k1"), jwk(RSA_KEY_2, "k1")))
    assert_invalid_client(await ask(client, assertion(client_id)), "ambiguous")


async def test_several_matching_keys_by_url(
    app: Starlette, client: httpx.AsyncClient, keyserver: LoopbackServer
) -> None:
    keyserver.serve_json(JWKS_PATH, jwks(jwk(RSA_KEY, "k1"), jwk(RSA_KEY_2, "k1")))
    client_id = await register_keys(app, url=keyserver.url(JWKS_PATH))
    assert_invalid_client(await ask(client, assertion(client_id)), "ambiguous")


async def test_jku_must_equal_the_registered_url(
    app: Starlette, client: httpx.AsyncClient, keyserver: LoopbackServer
) -> None:
    keyserver.serve_json(JWKS_PATH, jwks(jwk(RSA_KEY, "k1")))
    keyserver.serve_json("/attacker.json", jwks(jwk(RSA_KEY_2, "k1")))
    by_url = await register_keys(app, url=keyserver.url(JWKS_PATH))
    evil = {"jku": keyserver.url("/attacker.json")}
    response = await ask(client, assertion(by_url, RSA_KEY_2, headers=evil))
    assert_invalid_client(response, "jku header does not match")
    by_value = await register_keys(app, keys=jwks(jwk(RSA_KEY, "k1")))
    response = await ask(client, assertion(by_value, headers={"jku": keyserver.url(JWKS_PATH)}))
    assert_invalid_client(response, "jku header does not match")
    assert keyserver.hits("/attacker.json") == 0  # never fetched


async def test_alg_none_is_refused(app: Starlette, client: httpx.AsyncClient) -> None:
    client_id = await register_keys(app, keys=jwks(jwk(RSA_KEY, "k1")))
    response = await ask(client, unsigned(claims(client_id), kid="k1"))
    assert_invalid_client(response, "alg none")


async def test_hmac_signed_with_the_public_key_is_refused(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    client_id = await register_keys(app, keys=jwks(jwk(RSA_KEY, "k1")))
    response = await ask(client, hmac_with_public_key(claims(client_id), RSA_KEY, "k1"))
    assert_invalid_client(response, "HMAC")


async def test_bad_signature_is_refused(app: Starlette, client: httpx.AsyncClient) -> None:
    client_id = await register_keys(app, keys=jwks(jwk(RSA_KEY, "k1")))
    assert_invalid_client(await ask(client, bad_signature(assertion(client_id))), "signature")
    assert_invalid_client(await ask(client, assertion(client_id, RSA_KEY_2)), "signature")


async def test_unknown_client_is_refused(client: httpx.AsyncClient) -> None:
    assert_invalid_client(await ask(client, assertion("nobody")), "Unknown client")


async def test_revoked_client_is_refused(app: Starlette, client: httpx.AsyncClient) -> None:
    client_id = await register_keys(app, keys=jwks(jwk(RSA_KEY, "k1")))
    await runtime_of(app).catalogue.revoke_client(client_id, datetime.now(UTC))
    assert_invalid_client(await ask(client, assertion(client_id)), "revoked")


async def test_form_client_id_must_match_iss(app: Starlette, client: httpx.AsyncClient) -> None:
    client_id = await register_keys(app, keys=jwks(jwk(RSA_KEY, "k1")))
    response = await ask(client, assertion(client_id), client_id="another")
    assert_invalid_client(response, "client_id differs")


async def test_wrong_assertion_type(app: Starlette, client: httpx.AsyncClient) -> None:
    client_id = await register_keys(app, keys=jwks(jwk(RSA_KEY, "k1")))
    response = await client.post(
        "/fhir/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
            "client_assertion": assertion(client_id),
        },
    )
    assert_invalid_client(response, "client_assertion_type must be")


async def test_a_key_client_cannot_use_a_secret(app: Starlette, client: httpx.AsyncClient) -> None:
    client_id = await register_keys(app, keys=jwks(jwk(RSA_KEY, "k1")))
    response = await client.post(
        "/fhir/auth/token", data={"grant_type": "client_credentials"}, auth=(client_id, "")
    )
    assert response.status_code == 401
    response = await client.post(
        "/fhir/auth/token", data={"grant_type": "client_credentials"}, auth=(client_id, "guess")
    )
    assert_invalid_client(response, "registered with keys")


async def test_a_secret_client_cannot_use_an_assertion(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    client_id, _ = await register(app)
    assert_invalid_client(
        await ask(client, assertion(client_id)), "registered with a client secret"
    )


async def test_assertion_and_secret_together_are_refused(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    client_id, secret = await register(app)
    response = await ask(client, assertion(client_id), auth=(client_id, secret))
    assert_invalid_client(response, "Authorization header")


async def test_unreachable_jwks_url(app: Starlette, client: httpx.AsyncClient) -> None:
    client_id = await register_keys(app, url=closed_port_url(JWKS_PATH))
    assert_invalid_client(await ask(client, assertion(client_id)), "could not be fetched")


# --- fetching the client's JWK Set: the once-a-minute rule, with an injected clock -------------


@pytest.fixture
async def clocked(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient, FakeClock]]:
    clock = FakeClock()
    monkeypatch.setattr(
        "fhirbin.runtime.build_authenticator", functools.partial(build_authenticator, clock=clock)
    )
    async with serving(settings) as (application, http):
        yield application, http, clock


async def test_unknown_kid_refetches_at_most_once_a_minute(
    clocked: tuple[Starlette, httpx.AsyncClient, FakeClock], keyserver: LoopbackServer
) -> None:
    app, client, clock = clocked
    served = {"set": jwks(jwk(RSA_KEY, "k1"))}
    keyserver.serve_json(JWKS_PATH, lambda: served["set"], **{"Cache-Control": "max-age=3600"})
    client_id = await register_keys(app, url=keyserver.url(JWKS_PATH))
    ok = await ask(client, assertion(client_id, now=clock.now))
    assert ok.status_code == 200, ok.text
    assert keyserver.hits(JWKS_PATH) == 1
    # The client rotates to a new key; within the minute of the last fetch no refetch happens.
    served["set"] = jwks(jwk(RSA_KEY, "k1"), jwk(EC_P384, "k2"))
    rotated = assertion(client_id, EC_P384, "ES384", kid="k2", now=clock.now)
    assert_invalid_client(await ask(client, rotated), "no key with kid 'k2'")
    assert keyserver.hits(JWKS_PATH) == 1
    clock.advance(61)
    rotated = assertion(client_id, EC_P384, "ES384", kid="k2", now=clock.now)
    assert (await ask(client, rotated)).status_code == 200
    assert keyserver.hits(JWKS_PATH) == 2
    # An unknown kid right after: refused without another fetch, however often it is tried.
    for _ in range(5):
        bogus = assertion(client_id, kid="k-unknown", now=clock.now)
        assert_invalid_client(await ask(client, bogus), "no key with kid")
    assert keyserver.hits(JWKS_PATH) == 2


async def test_client_jwks_is_refetched_when_its_cache_control_expires(
    clocked: tuple[Starlette, httpx.AsyncClient, FakeClock], keyserver: LoopbackServer
) -> None:
    app, client, clock = clocked
    keyserver.serve_json(JWKS_PATH, jwks(jwk(RSA_KEY, "k1")), **{"Cache-Control": "max-age=120"})
    client_id = await register_keys(app, url=keyserver.url(JWKS_PATH))
    for _ in range(3):
        assert (await ask(client, assertion(client_id, now=clock.now))).status_code == 200
        clock.advance(30)
    assert keyserver.hits(JWKS_PATH) == 1
    clock.advance(31)  # 121 s after the fetch
    assert (await ask(client, assertion(client_id, now=clock.now))).status_code == 200
    assert keyserver.hits(JWKS_PATH) == 2


# --- fhirbin client create --jwks-file / --jwks-url --------------------------------------------


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), env={}, catch_exceptions=False)


def test_client_create_with_a_jwks_file_prints_no_secret(tmp_path: Path) -> None:
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps(jwks(jwk(RSA_KEY, "k1"))))
    data = str(tmp_path / "data")
    result = run_cli(
        "client", "create", "svc", "--scope", "system/Binary.rs", "--jwks-file", str(keys),
        "--data-dir", data, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["token_endpoint_auth_method"] == "private_key_jwt"
    assert "client_secret" not in out
    text = run_cli(
        "client", "create", "svc2", "--scope", "system/Binary.rs", "--jwks-file", str(keys),
        "--data-dir", data,
    )  # fmt: skip
    assert "client_secret" not in text.output
    assert "private_key_jwt" in text.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--jwks-url", "http://keys.example.org/jwks"], "https"),
        (["--jwks-url", "https://a.example/j", "--jwks-file", "FILE"], "not both"),
        (["--jwks-file", "PRIVATE"], "private key parameters"),
        (["--jwks-file", "NOTJSON"], "not valid JSON"),
    ],
)
def test_client_create_refuses_bad_key_registrations(
    tmp_path: Path, args: list[str], message: str
) -> None:
    files = {
        "FILE": tmp_path / "jwks.json",
        "PRIVATE": tmp_path / "private.json",
        "NOTJSON": tmp_path / "bad.json",
    }
    files["FILE"].write_text(json.dumps(jwks(jwk(RSA_KEY, "k1"))))
    files["PRIVATE"].write_text(json.dumps(jwks({**jwk(RSA_KEY, "k1"), "d": "AQAB"})))
    files["NOTJSON"].write_text("{")
    args = [str(files[a]) if a in files else a for a in args]
    result = CliRunner().invoke(
        cli,
        ["client", "create", "svc", "--scope", "system/Binary.rs", *args,
         "--data-dir", str(tmp_path / "data")],
        env={},
    )  # fmt: skip
    assert result.exit_code == 2
    assert message in result.output


async def test_a_cli_registered_key_client_gets_a_token(
    app: Starlette, client: httpx.AsyncClient, settings: Settings, tmp_path: Path
) -> None:
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps(jwk(EC_P384, "my-key")))  # one bare JWK is accepted too
    args = (
        "client", "create", "svc", "--scope", "system/Binary.rs", "--jwks-file", str(keys),
        "--data-dir", str(settings.data_dir), "--json",
    )  # fmt: skip
    result = await anyio.to_thread.run_sync(lambda: run_cli(*args))
    client_id = json.loads(result.stdout)["client_id"]
    stored = await runtime_of(app).catalogue.get_client(client_id)
    assert stored is not None
    assert stored.secret_hash == ""
    assert stored.jwks is not None
    assert json.loads(stored.jwks)["keys"][0]["kid"] == "my-key"
    response = await ask(client, assertion(client_id, EC_P384, "ES384", kid="my-key"))
    assert response.status_code == 200, response.text


async def test_a_cli_registered_url_client(
    app: Starlette,
    client: httpx.AsyncClient,
    settings: Settings,
    keyserver: LoopbackServer,
) -> None:
    keyserver.serve_json(JWKS_PATH, jwks(jwk(RSA_KEY, "k1")))
    args = (
        "client", "create", "svc", "--scope", "system/Binary.rs",
        "--jwks-url", keyserver.url(JWKS_PATH), "--data-dir", str(settings.data_dir), "--json",
    )  # fmt: skip
    result = await anyio.to_thread.run_sync(lambda: run_cli(*args))
    client_id = json.loads(result.stdout)["client_id"]
    stored = await runtime_of(app).catalogue.get_client(client_id)
    assert stored is not None
    assert stored.jwks_url == keyserver.url(JWKS_PATH)
    assert (await ask(client, assertion(client_id))).status_code == 200
