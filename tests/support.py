"""Helpers the API and end-to-end tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime

import httpx
from starlette.applications import Starlette

from fhirbin.api.app import create_app
from fhirbin.auth.clients import hash_secret, new_client_id, new_client_secret
from fhirbin.config import Settings
from fhirbin.metadata.base import Client
from fhirbin.runtime import Runtime

BASE = "http://testserver/fhir"
ALL_SCOPES = "system/Binary.cruds"


def runtime_of(app: Starlette) -> Runtime:
    rt: Runtime = app.state.runtime
    return rt


def swap_runtime(app: Starlette, **parts: object) -> Runtime:
    """Serve the started ``app`` from here on with some parts of its runtime replaced."""
    swapped = replace(runtime_of(app), **parts)  # type: ignore[arg-type]
    app.state.runtime = swapped
    return swapped


async def register(app: Starlette, scope: str = ALL_SCOPES) -> tuple[str, str]:
    """Register a client straight in the catalogue; returns (client_id, client_secret)."""
    client_id, secret = new_client_id(), new_client_secret()
    await runtime_of(app).catalogue.add_client(
        Client(
            client_id=client_id,
            name="test",
            scope=scope,
            secret_hash=hash_secret(secret),
            created_at=datetime.now(UTC),
        )
    )
    return client_id, secret


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """A started application and an in-process client for it; stopped afterwards."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield application, http


async def issued_token(
    app: Starlette, http: httpx.AsyncClient, scope: str = ALL_SCOPES
) -> tuple[str, str]:
    """``(client_id, access token)`` of a new client holding ``scope``, through the real
    token endpoint."""
    client_id, secret = await register(app, scope)
    answer = await http.post(
        "/fhir/auth/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(client_id, secret),
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return client_id, token


async def bearer_for(
    app: Starlette, http: httpx.AsyncClient, scope: str = ALL_SCOPES
) -> dict[str, str]:
    """Authorization headers of a new client holding ``scope``, through the token endpoint."""
    _, token = await issued_token(app, http, scope)
    return {"Authorization": f"Bearer {token}"}
