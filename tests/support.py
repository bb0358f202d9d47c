"""Helpers the API and end-to-end tests share."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.applications import Starlette

from fhirbin.api.app import Runtime
from fhirbin.auth.clients import hash_secret, new_client_id, new_client_secret
from fhirbin.metadata.base import Client

BASE = "http://testserver/fhir"
ALL_SCOPES = "system/Binary.cruds"


def runtime_of(app: Starlette) -> Runtime:
    rt: Runtime = app.state.runtime
    return rt


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
