"""Shared fixtures: a real application over a real SQLite file and a real blob folder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from fhirbin.api.app import create_app
from fhirbin.config import Settings, load_settings
from tests.support import ALL_SCOPES, BASE, issued_token

TokenFactory = Callable[..., Awaitable[str]]


@pytest.fixture(params=["embedded"])
def backend(request: pytest.FixtureRequest) -> str:
    """Which stores the app runs on. Modules that also run on PostgreSQL + S3 override this
    fixture with ``params=BACKENDS`` (see ``backends``)."""
    param: str = request.param
    return param


#: Both deployments: the embedded default, and PostgreSQL + S3 (real servers, tests/conftest.py).
BACKENDS = ["embedded", "scaleout"]


@pytest.fixture
def settings(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "base_url": BASE,
        "revocation_check_interval": 0,
        "max_binary_size": 1024 * 1024,
        # a module may set more, e.g. to store hostile content on purpose
        **getattr(request.module, "SETTINGS_OVERRIDES", {}),
    }
    if backend == "scaleout":
        postgres = request.getfixturevalue("postgres")
        seaweed = request.getfixturevalue("seaweed")
        values["database_url"] = postgres.migrated_database()
        values["storage_url"] = seaweed.fresh_url()
        values["s3_endpoint_url"] = seaweed.endpoint
        for name, value in seaweed.env.items():
            monkeypatch.setenv(name, value)
    return load_settings({}, values)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def token_for(app: Starlette, client: httpx.AsyncClient) -> TokenFactory:
    """Get a real token through the real token endpoint for a new client with ``scope``."""

    async def make(scope: str = ALL_SCOPES) -> str:
        _, token = await issued_token(app, client, scope)
        return token

    return make


@pytest.fixture
async def auth(token_for: TokenFactory) -> dict[str, str]:
    """Authorization headers of a client holding every Binary scope."""
    return {"Authorization": f"Bearer {await token_for()}"}
