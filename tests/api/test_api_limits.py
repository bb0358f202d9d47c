"""Header size, stalled bodies, rate limits and CORS, over the real app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from fhirbin.api.app import create_app
from fhirbin.api.limits import TokenBuckets
from fhirbin.config import Settings, load_settings
from tests.support import register

pytestmark = pytest.mark.anyio


async def app_with(settings: Settings, **overrides: Any) -> tuple[Starlette, Any]:
    app = create_app(load_settings({}, {**settings.__dict__, **overrides}))
    return app, app.router.lifespan_context(app)


async def token(app: Starlette, c: httpx.AsyncClient) -> dict[str, str]:
    client_id, secret = await register(app)
    got = await c.post(
        "/fhir/auth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    return {"Authorization": f"Bearer {got.json()['access_token']}"}


def http(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def test_oversized_headers_are_431(client: httpx.AsyncClient) -> None:
    response = await client.get("/fhir/metadata", headers={"X-Junk": "a" * 40000})
    assert response.status_code == 431
    assert response.json()["issue"][0]["code"] == "too-long"


async def test_stalled_body_is_408_and_stores_nothing(settings: Settings) -> None:
    app, lifespan = await app_with(settings, body_timeout=1)
    async with lifespan, http(app) as c:
        headers = {**await token(app, c), "Content-Type": "application/octet-stream"}

        async def slow() -> AsyncIterator[bytes]:
            yield b"first"
            await asyncio.sleep(2)
            yield b"never"

        response = await c.post("/fhir/Binary", content=slow(), headers=headers)
        assert response.status_code == 408
        assert response.json()["issue"][0]["code"] == "timeout"
        blobs = app.state.runtime.settings.blob_dir
        assert [p for p in blobs.rglob("*") if p.is_file()] == []


async def test_rate_limit_answers_429_with_retry_after(settings: Settings) -> None:
    app, lifespan = await app_with(settings, rate_limit=1, rate_burst=3)
    async with lifespan, http(app) as c:
        headers = await token(app, c)
        statuses = [(await c.get("/fhir/Binary/x", headers=headers)).status_code for _ in range(5)]
        assert statuses[:3] == [404, 404, 404]
        limited = await c.get("/fhir/Binary/x", headers=headers)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.json()["issue"][0]["code"] == "throttled"
        other = await token(app, c)  # another client has its own bucket
        assert (await c.get("/fhir/Binary/x", headers=other)).status_code == 404


def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=2, burst=2, clock=lambda: now[0])
    assert buckets.take("a") == 0
    assert buckets.take("a") == 0
    assert buckets.take("a") == pytest.approx(0.5)
    now[0] = 0.5
    assert buckets.take("a") == 0


async def test_no_cors_by_default(client: httpx.AsyncClient) -> None:
    response = await client.get("/fhir/metadata", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in response.headers


async def test_cors_for_configured_origins_only(settings: Settings) -> None:
    app, lifespan = await app_with(settings, cors_origins="https://app.example")
    async with lifespan, http(app) as c:
        preflight = await c.options(
            "/fhir/Binary/x",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "Authorization",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        got = await c.get("/fhir/metadata", headers={"Origin": "https://app.example"})
        assert got.headers["access-control-allow-origin"] == "https://app.example"
        assert "ETag" in got.headers["access-control-expose-headers"]
        evil = await c.get("/fhir/metadata", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in evil.headers
