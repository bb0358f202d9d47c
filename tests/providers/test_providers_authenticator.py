"""Which verifier a bearer token goes to (fhirbin.providers.authenticator)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from fhirbin.auth.tokens import TokenIssuer, TokenVerifier
from fhirbin.config import Settings, SettingsError, load_settings
from fhirbin.errors import Unauthorized
from fhirbin.runtime import build_authenticator
from tests.providers.support import (
    RSA_KEY,
    LoopbackServer,
    Reply,
    jwk,
    jwks,
    loopback_server,
    sign,
)

pytestmark = pytest.mark.anyio

BASE = "https://fhir.example.org/fhir"
IDP = "https://idp.example.org"
OWN_KEY = ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with loopback_server() as running:
        running.serve_json("/jwks", jwks(jwk(RSA_KEY, "idp-1")))
        yield running


def settings(tmp_path: Path, **values: Any) -> Settings:
    return load_settings({}, {"data_dir": tmp_path, "base_url": BASE, **values})


def own() -> tuple[TokenIssuer, TokenVerifier]:
    issuer = TokenIssuer(OWN_KEY, BASE)
    return issuer, TokenVerifier(issuer.public_keys, BASE)


def external_token(**overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": IDP, "aud": BASE, "exp": now + 60, "azp": "portal", "scope": "system/Binary.r"}
    claims.update(overrides)
    return sign(claims, RSA_KEY, "RS256", "idp-1")


def introspection_answer(seen: Any) -> Reply:
    return Reply.json(
        {
            "active": True,
            "client_id": "gw",
            "scope": "system/Binary.s",
            "exp": int(time.time()) + 60,
        }
    )


async def test_own_tokens_first_then_external_then_introspection(
    tmp_path: Path, server: LoopbackServer
) -> None:
    server.routes["/introspect"] = introspection_answer
    issuer, verifier = own()
    auth = build_authenticator(
        settings(
            tmp_path,
            external_issuer=IDP,
            external_jwks=server.url("/jwks"),
            introspection_url=server.url("/introspect"),
        ),
        verifier,
    )
    try:
        mine = issuer.issue(audience=BASE, client_id="c1", scope="system/Binary.rs", ttl=60)
        assert (await auth.authenticate(mine, BASE)).client_id == "c1"
        assert server.hits("/jwks") == server.hits("/introspect") == 0
        assert (await auth.authenticate(external_token(), BASE)).client_id == "portal"
        assert server.hits("/introspect") == 0
        assert (await auth.authenticate("opaque-token", BASE)).client_id == "gw"
        # A JWT of an issuer fhirbin does not know is the introspection endpoint's to judge.
        other = external_token(iss="https://other-idp.example")
        assert (await auth.authenticate(other, BASE)).client_id == "gw"
        assert server.hits("/introspect") == 2
    finally:
        await auth.close()


async def test_external_audience_setting(tmp_path: Path, server: LoopbackServer) -> None:
    _, verifier = own()
    auth = build_authenticator(
        settings(
            tmp_path,
            external_issuer=IDP,
            external_jwks=server.url("/jwks"),
            audience="urn:fhirbin",
        ),
        verifier,
    )
    try:
        token = external_token(aud="urn:fhirbin")
        assert (await auth.authenticate(token, BASE)).audience == "urn:fhirbin"
        with pytest.raises(Unauthorized, match="aud"):
            await auth.authenticate(external_token(), BASE)
    finally:
        await auth.close()


async def test_without_configuration_only_own_tokens(tmp_path: Path) -> None:
    _, verifier = own()
    auth = build_authenticator(settings(tmp_path), verifier)
    try:
        assert auth.external is None
        assert auth.introspection is None
        with pytest.raises(Unauthorized, match="must be signed with ES256"):
            await auth.authenticate(external_token(), BASE)
        with pytest.raises(Unauthorized, match="not a well-formed JWT"):
            await auth.authenticate("opaque", BASE)
    finally:
        await auth.close()


async def test_oversized_tokens_are_refused_before_anything_is_asked(
    tmp_path: Path, server: LoopbackServer
) -> None:
    server.routes["/introspect"] = introspection_answer
    _, verifier = own()
    auth = build_authenticator(
        settings(
            tmp_path,
            external_issuer=IDP,
            external_jwks=server.url("/jwks"),
            introspection_url=server.url("/introspect"),
        ),
        verifier,
    )
    try:
        for token in (external_token(padding="x" * 9000), "o" * 8193):
            with pytest.raises(Unauthorized, match="too long"):
                await auth.authenticate(token, BASE)
        assert server.seen == []
    finally:
        await auth.close()


def test_external_issuer_needs_a_jwks(tmp_path: Path) -> None:
    _, verifier = own()
    with pytest.raises(SettingsError, match="FHIRBIN_EXTERNAL_JWKS"):
        build_authenticator(settings(tmp_path, external_issuer=IDP), verifier)
