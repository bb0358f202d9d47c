"""Bearer tokens, the token endpoint and scope checks over the real app."""

from __future__ import annotations

import base64
import json

import httpx
import jwt
import pytest
from starlette.applications import Starlette

from tests.api.conftest import TokenFactory
from tests.support import BASE, register, runtime_of

pytestmark = pytest.mark.anyio


async def test_no_token_is_401_without_error_code(client: httpx.AsyncClient) -> None:
    response = await client.get("/fhir/Binary/abc")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="fhirbin"'
    assert response.json()["issue"][0]["code"] == "login"


@pytest.mark.parametrize("header", ["Bearer", "Basic abc", "Bearer not.a.jwt", "Token x"])
async def test_malformed_credentials_are_401_invalid_token(
    client: httpx.AsyncClient, header: str
) -> None:
    response = await client.get("/fhir/Binary/abc", headers={"Authorization": header})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_lowercase_bearer_scheme_is_accepted(
    client: httpx.AsyncClient, token_for: TokenFactory
) -> None:
    token = await token_for()
    response = await client.get("/fhir/Binary/abc", headers={"Authorization": f"bearer {token}"})
    assert response.status_code == 404


async def test_forged_token_is_401(client: httpx.AsyncClient, token_for: TokenFactory) -> None:
    token = await token_for("system/Binary.r")
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = "system/*.cruds"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    response = await client.get(
        "/fhir/Binary/abc",
        headers={"Authorization": f"Bearer {header}.{forged_payload}.{signature}"},
    )
    assert response.status_code == 401


async def test_alg_none_token_is_401(client: httpx.AsyncClient, token_for: TokenFactory) -> None:
    real = jwt.decode(await token_for(), options={"verify_signature": False})
    unsigned = jwt.encode(real, key="", algorithm="none")
    response = await client.get("/fhir/Binary/abc", headers={"Authorization": f"Bearer {unsigned}"})
    assert response.status_code == 401


async def test_token_for_another_audience_is_401(client: httpx.AsyncClient, app: Starlette) -> None:
    rt = runtime_of(app)
    client_id, _ = await register(app)
    token = rt.issuer.issue(
        audience="https://elsewhere.example/fhir",
        client_id=client_id,
        scope="system/Binary.r",
        ttl=60,
    )
    response = await client.get("/fhir/Binary/abc", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


async def test_expired_token_is_401(client: httpx.AsyncClient, app: Starlette) -> None:
    import time

    rt = runtime_of(app)
    client_id, _ = await register(app)
    token = rt.issuer.issue(
        audience=BASE,
        client_id=client_id,
        scope="system/Binary.r",
        ttl=60,
        now=int(time.time()) - 120,
    )
    response = await client.get("/fhir/Binary/abc", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


async def test_revoked_client_tokens_stop_working(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    from datetime import UTC, datetime

    client_id, secret = await register(app, "system/Binary.rs")
    got = await client.post(
        "/fhir/auth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    headers = {"Authorization": f"Bearer {got.json()['access_token']}"}
    assert (await client.get("/fhir/Binary/abc", headers=headers)).status_code == 404
    await runtime_of(app).catalogue.revoke_client(client_id, datetime.now(UTC))
    assert (await client.get("/fhir/Binary/abc", headers=headers)).status_code == 401
    again = await client.post(
        "/fhir/auth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert again.status_code == 401
    assert again.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("scope", "method", "path", "status"),
    [
        ("system/Binary.r", "GET", "/fhir/Binary?_id=x", 403),  # search needs s
        ("system/Binary.rs", "POST", "/fhir/Binary", 403),  # create needs c
        ("system/Binary.cud", "GET", "/fhir/Binary/abc", 403),  # write is not read
        ("system/Binary.read", "GET", "/fhir/Binary?_id=x", 200),  # v1 read = rs
        ("system/Binary.write", "POST", "/fhir/Binary", 201),  # v1 write = cud
        ("system/*.*", "GET", "/fhir/Binary/abc", 404),
        ("system/*.rs", "GET", "/fhir/Binary?_id=x", 200),
    ],
)
async def test_scopes_decide_what_a_token_may_do(
    client: httpx.AsyncClient,
    token_for: TokenFactory,
    scope: str,
    method: str,
    path: str,
    status: int,
) -> None:
    token = await token_for(scope)
    response = await client.request(
        method,
        path,
        content=b"x",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
    )
    assert response.status_code == status, response.text
    if status == 403:
        assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
        assert response.json()["issue"][0]["code"] == "forbidden"


async def test_token_response_shape(client: httpx.AsyncClient, app: Starlette) -> None:
    client_id, secret = await register(app, "system/Binary.rs")
    response = await client.post(
        "/fhir/auth/token",
        data={
            "grant_type": "client_credentials",
            "scope": "system/Binary.rs",
            "client_id": client_id,
            "client_secret": secret,
        },
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == "system/Binary.rs"
    assert "refresh_token" not in body
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert {"iss", "aud", "exp", "iat", "jti", "client_id", "scope"} <= set(claims)
    assert claims["aud"] == BASE
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "ES256"


async def test_granted_scope_never_exceeds_registration(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    client_id, secret = await register(app, "system/Binary.r")
    response = await client.post(
        "/fhir/auth/token",
        data={"grant_type": "client_credentials", "scope": "system/Binary.cruds"},
        auth=(client_id, secret),
    )
    assert response.status_code == 200
    assert response.json()["scope"] == "system/Binary.r"
    refused = await client.post(
        "/fhir/auth/token",
        data={"grant_type": "client_credentials", "scope": "system/Binary.d"},
        auth=(client_id, secret),
    )
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_scope"


@pytest.mark.parametrize(
    ("data", "auth_ok", "status", "error"),
    [
        ({"grant_type": "client_credentials"}, False, 401, "invalid_client"),
        ({"grant_type": "authorization_code"}, True, 400, "unsupported_grant_type"),
        ({}, True, 400, "invalid_request"),
    ],
)
async def test_token_endpoint_errors_follow_rfc6749(
    client: httpx.AsyncClient,
    app: Starlette,
    data: dict[str, str],
    auth_ok: bool,
    status: int,
    error: str,
) -> None:
    client_id, secret = await register(app)
    response = await client.post(
        "/fhir/auth/token", data=data, auth=(client_id, secret if auth_ok else "wrong")
    )
    assert response.status_code == status
    assert response.json()["error"] == error


async def test_unknown_client_is_invalid_client(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/fhir/auth/token", data={"grant_type": "client_credentials"}, auth=("nobody", "x")
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_access_token_in_the_query_is_refused(
    client: httpx.AsyncClient, token_for: TokenFactory
) -> None:
    token = await token_for()
    response = await client.get(f"/fhir/Binary/abc?access_token={token}")
    assert response.status_code == 400
    assert token not in response.text


async def test_jwks_verifies_issued_tokens(
    client: httpx.AsyncClient, token_for: TokenFactory
) -> None:
    token = await token_for()
    keys = (await client.get("/fhir/.well-known/jwks.json")).json()
    (jwk,) = keys["keys"]
    assert "d" not in jwk  # never the private part
    public = jwt.PyJWK(jwk).key
    claims = jwt.decode(token, public, algorithms=["ES256"], audience=BASE)
    assert claims["scope"] == "system/Binary.cruds"
