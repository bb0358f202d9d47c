"""External identity providers over the real app: IdP JWTs and RFC 7662 introspection.

The provider is a real HTTP server on loopback serving its JWK Set (with Cache-Control) and an
introspection endpoint; the app's clock is injected so the once-a-minute rules are proved by
counting fetches, not by sleeping.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from fhirbin.api.app import create_app
from fhirbin.config import Settings, load_settings
from fhirbin.runtime import build_authenticator
from tests.providers.support import (
    EC_P384,
    RSA_KEY,
    RSA_KEY_2,
    FakeClock,
    LoopbackServer,
    PrivateKey,
    Reply,
    Seen,
    bad_signature,
    hmac_with_public_key,
    jwk,
    jwks,
    loopback_server,
    sign,
    unsigned,
)
from tests.support import BASE, runtime_of

pytestmark = pytest.mark.anyio

IDP = "https://idp.example.org/realms/health"
JWKS_PATH = "/realms/health/certs"
INTROSPECT_PATH = "/realms/health/introspect"


@dataclass
class Harness:
    app: Starlette
    http: httpx.AsyncClient
    clock: FakeClock
    idp: LoopbackServer
    active: dict[str, dict[str, Any]]  # opaque token → introspection answer

    async def get(self, token: str, path: str = "/fhir/Binary/none-such") -> httpx.Response:
        return await self.http.get(path, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def idp() -> Iterator[LoopbackServer]:
    with loopback_server() as running:
        running.serve_json(
            JWKS_PATH,
            jwks(jwk(RSA_KEY, "rsa-1"), jwk(EC_P384, "ec-1")),
            **{"Cache-Control": "max-age=300"},
        )
        yield running


def external_settings(tmp_path: Path, idp: LoopbackServer, **values: Any) -> Settings:
    base: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "base_url": BASE,
        "revocation_check_interval": 0,
        "external_issuer": IDP,
        "external_jwks": idp.url(JWKS_PATH),
        "introspection_url": idp.url(INTROSPECT_PATH),
        "introspection_client_id": "fhirbin",
        "introspection_client_secret": "introspection-secret",
        "introspection_cache_ttl": 30,
    }
    base.update(values)
    return load_settings({}, base)


async def _harness(
    settings: Settings, idp: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Harness]:
    clock = FakeClock()
    active: dict[str, dict[str, Any]] = {}

    def introspect(seen: Seen) -> Reply:
        form = dict(pair.split("=", 1) for pair in seen.body.decode().split("&"))
        return Reply.json(active.get(form.get("token", ""), {"active": False}))

    idp.routes[INTROSPECT_PATH] = introspect
    monkeypatch.setattr(
        "fhirbin.runtime.build_authenticator", functools.partial(build_authenticator, clock=clock)
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield Harness(application, http, clock, idp, active)


@pytest.fixture
async def h(
    tmp_path: Path, idp: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Harness]:
    async for harness in _harness(external_settings(tmp_path, idp), idp, monkeypatch):
        yield harness


def idp_claims(now: float, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "iss": IDP,
        "aud": [BASE, "account"],
        "exp": int(now) + 300,
        "iat": int(now),
        "azp": "portal-backend",
        "sub": "5f0c-user",
        "scope": "openid system/Binary.rs",
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def idp_token(
    now: float, key: PrivateKey = RSA_KEY, alg: str = "RS256", kid: str | None = "rsa-1", **kw: Any
) -> str:
    return sign(idp_claims(now, **kw), key, alg, kid, typ="at+jwt")


def assert_invalid_token(response: httpx.Response, reason: str) -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert 'error="invalid_token"' in challenge
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert reason in outcome["issue"][0]["diagnostics"], outcome


# --- accepted ----------------------------------------------------------------------------------


async def test_an_idp_token_is_accepted(h: Harness) -> None:
    response = await h.get(idp_token(h.clock.now))
    assert response.status_code == 404  # authorised; the Binary does not exist
    search = await h.get(idp_token(h.clock.now), "/fhir/Binary?_id=x")
    assert search.status_code == 200


async def test_es384_and_scp_lists(h: Harness) -> None:
    token = idp_token(
        h.clock.now, EC_P384, "ES384", "ec-1", scope=None, scp=["system/Binary.r", "openid"]
    )
    assert (await h.get(token)).status_code == 404
    # r without s: search is not allowed
    assert (await h.get(token, "/fhir/Binary?_id=x")).status_code == 403


async def test_claims_reach_the_request(h: Harness) -> None:
    token = idp_token(h.clock.now, patient="pat-42", client_id="portal")
    claims = await runtime_of(h.app).authenticator.authenticate(token, BASE)
    assert claims.patient == "pat-42"
    assert claims.client_id == "portal"
    assert claims.subject == "5f0c-user"
    assert claims.issuer == IDP


async def test_fhirbins_own_tokens_keep_working(h: Harness) -> None:
    from tests.support import register

    client_id, secret = await register(h.app, "system/Binary.rs")
    got = await h.http.post(
        "/fhir/auth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert (await h.get(got.json()["access_token"])).status_code == 404
    assert h.idp.hits(INTROSPECT_PATH) == 0


async def test_audience_setting(tmp_path: Path, idp: LoopbackServer, monkeypatch: Any) -> None:
    settings = external_settings(tmp_path, idp, audience="urn:fhirbin:prod")
    async for harness in _harness(settings, idp, monkeypatch):
        good = idp_token(harness.clock.now, aud="urn:fhirbin:prod")
        assert (await harness.get(good)).status_code == 404
        base_aud = idp_token(harness.clock.now, aud=BASE)
        assert_invalid_token(await harness.get(base_aud), "aud must include urn:fhirbin:prod")


# --- the matrix: every one is 401 invalid_token ------------------------------------------------


def _oversized(now: float) -> str:
    return idp_token(now, padding="x" * 9000)


CASES: dict[str, tuple[Any, str]] = {
    "expired": (lambda now: idp_token(now, exp=int(now) - 60), "expired"),
    "not yet valid": (lambda now: idp_token(now, nbf=int(now) + 120), "not valid yet"),
    "wrong issuer": (
        lambda now: idp_token(now, iss="https://evil.example/realms/health"),
        "not active",  # not fhirbin's or the IdP's: introspection says no
    ),
    "wrong audience": (lambda now: idp_token(now, aud="https://other.example/fhir"), "aud"),
    "unknown kid": (lambda now: idp_token(now, kid="rotated-away"), "unknown key"),
    "alg none": (lambda now: unsigned(idp_claims(now), kid="rsa-1"), "alg none"),
    "hmac with the public key": (
        lambda now: hmac_with_public_key(idp_claims(now), RSA_KEY, "rsa-1"),
        "HMAC",
    ),
    "bad signature": (lambda now: bad_signature(idp_token(now)), "signature is invalid"),
    "signed by another key": (lambda now: idp_token(now, RSA_KEY_2), "signature is invalid"),
    "missing exp": (lambda now: idp_token(now, exp=None), "lacks the exp claim"),
    "oversized": (_oversized, "too long"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_attackers_matrix(h: Harness, case: str) -> None:
    make, reason = CASES[case]
    assert_invalid_token(await h.get(make(h.clock.now)), reason)


async def test_wrong_issuer_without_introspection(
    tmp_path: Path, idp: LoopbackServer, monkeypatch: Any
) -> None:
    settings = external_settings(tmp_path, idp, introspection_url="")
    async for harness in _harness(settings, idp, monkeypatch):
        token = idp_token(harness.clock.now, iss="https://evil.example/realms/health")
        assert_invalid_token(await harness.get(token), "")
        # fhirbin's own issuer with the IdP's key: not fhirbin's key, not fhirbin's algorithm.
        own_iss = idp_token(harness.clock.now, iss=BASE)
        assert_invalid_token(await harness.get(own_iss), "ES256")


# --- fetching the IdP's keys: Cache-Control and once a minute ----------------------------------


async def test_keys_are_fetched_once_and_tokens_verified_once(h: Harness) -> None:
    token = idp_token(h.clock.now)
    for _ in range(5):
        assert (await h.get(token)).status_code == 404
    for _ in range(5):
        assert (await h.get(idp_token(h.clock.now))).status_code == 404
    assert h.idp.hits(JWKS_PATH) == 1
    h.clock.advance(301)  # max-age=300 has passed
    assert (await h.get(idp_token(h.clock.now))).status_code == 404
    assert h.idp.hits(JWKS_PATH) == 2


async def test_unknown_kids_never_cause_more_than_one_fetch_a_minute(h: Harness) -> None:
    assert (await h.get(idp_token(h.clock.now))).status_code == 404
    assert h.idp.hits(JWKS_PATH) == 1
    h.clock.advance(60)
    for i in range(10):
        bogus = idp_token(h.clock.now, kid=f"attacker-{i}")
        assert_invalid_token(await h.get(bogus), "unknown key")
        h.clock.advance(3)
    assert h.idp.hits(JWKS_PATH) == 2  # one refetch for the first unknown kid, then none
    h.clock.advance(31)
    assert_invalid_token(await h.get(idp_token(h.clock.now, kid="attacker-x")), "unknown key")
    assert h.idp.hits(JWKS_PATH) == 3


async def test_key_rotation_is_picked_up_on_an_unknown_kid(h: Harness) -> None:
    assert (await h.get(idp_token(h.clock.now))).status_code == 404
    h.idp.serve_json(JWKS_PATH, jwks(jwk(RSA_KEY_2, "rsa-2")), **{"Cache-Control": "max-age=300"})
    h.clock.advance(60)
    rotated = idp_token(h.clock.now, RSA_KEY_2, kid="rsa-2")
    assert (await h.get(rotated)).status_code == 404
    assert h.idp.hits(JWKS_PATH) == 2


async def test_no_store_jwks_is_still_fetched_at_most_once_a_minute(h: Harness) -> None:
    h.idp.serve_json(JWKS_PATH, jwks(jwk(RSA_KEY, "rsa-1")), **{"Cache-Control": "no-store"})
    for _ in range(6):
        assert (await h.get(idp_token(h.clock.now, jti=str(time.time_ns())))).status_code == 404
        h.clock.advance(9)
    assert h.idp.hits(JWKS_PATH) == 1
    h.clock.advance(10)
    assert (await h.get(idp_token(h.clock.now, jti="later"))).status_code == 404
    assert h.idp.hits(JWKS_PATH) == 2


async def test_unreachable_jwks_is_401(
    tmp_path: Path, idp: LoopbackServer, monkeypatch: Any
) -> None:
    from tests.providers.support import closed_port_url

    settings = external_settings(tmp_path, idp, external_jwks=closed_port_url(JWKS_PATH))
    async for harness in _harness(settings, idp, monkeypatch):
        response = await harness.get(idp_token(harness.clock.now))
        assert_invalid_token(response, "issuer's keys are unavailable")


async def test_jwks_from_a_file(tmp_path: Path, idp: LoopbackServer, monkeypatch: Any) -> None:
    path = tmp_path / "idp-jwks.json"
    path.write_text(json.dumps(jwks(jwk(RSA_KEY, "rsa-1"))))
    settings = external_settings(tmp_path, idp, external_jwks=path.as_uri())
    async for harness in _harness(settings, idp, monkeypatch):
        assert (await harness.get(idp_token(harness.clock.now))).status_code == 404
        path.write_text(json.dumps(jwks(jwk(RSA_KEY, "rsa-1"), jwk(EC_P384, "ec-2"))))
        harness.clock.advance(60)
        new_key = idp_token(harness.clock.now, EC_P384, "ES384", "ec-2")
        assert (await harness.get(new_key)).status_code == 404  # re-read on the unknown kid
    assert idp.hits(JWKS_PATH) == 0


# --- opaque tokens: RFC 7662 introspection -----------------------------------------------------


def answer(clock: FakeClock, **extra: Any) -> dict[str, Any]:
    return {
        "active": True,
        "client_id": "gateway-app",
        "scope": "system/Binary.rs",
        "exp": int(clock.now) + 600,
        **extra,
    }


async def test_opaque_token_is_introspected_and_cached(h: Harness) -> None:
    h.active["2YotnFZFEjr1zCsicMWpAA"] = answer(h.clock)
    for _ in range(3):
        assert (await h.get("2YotnFZFEjr1zCsicMWpAA")).status_code == 404
        h.clock.advance(9)
    assert h.idp.hits(INTROSPECT_PATH) == 1
    seen = h.idp.seen[-1]
    assert seen.headers["authorization"].startswith("Basic ")
    assert "token_type_hint=access_token" in seen.body.decode()
    h.clock.advance(4)  # 31 s: the 30 s cache is over
    assert (await h.get("2YotnFZFEjr1zCsicMWpAA")).status_code == 404
    assert h.idp.hits(INTROSPECT_PATH) == 2


async def test_inactive_opaque_token_is_401_and_not_cached(h: Harness) -> None:
    for _ in range(2):
        assert_invalid_token(await h.get("revoked-or-unknown"), "not active")
    assert h.idp.hits(INTROSPECT_PATH) == 2
    h.active["revoked-or-unknown"] = answer(h.clock)
    assert (await h.get("revoked-or-unknown")).status_code == 404


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"exp": None}, "lacks exp"),
        ({"aud": "https://other.example/fhir"}, "aud"),
        ({"active": "true"}, "not active"),
    ],
)
async def test_unusable_introspection_answers(
    h: Harness, extra: dict[str, Any], reason: str
) -> None:
    h.active["tok"] = {k: v for k, v in {**answer(h.clock), **extra}.items() if v is not None}
    assert_invalid_token(await h.get("tok"), reason)


async def test_introspection_endpoint_down_is_401(h: Harness) -> None:
    h.idp.routes[INTROSPECT_PATH] = lambda _seen: Reply(503, b"down")
    assert_invalid_token(await h.get("some-opaque-token"), "HTTP 503")
