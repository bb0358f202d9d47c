"""Fixtures of the metadata tests: each test gets a fresh database of every supported kind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fhirbin.metadata.sql import SqlMetadataStore
from tests.metadata.support import DATABASES, Database


@pytest.fixture(params=sorted(DATABASES))
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    return Database(request.param, DATABASES[request.param](request, tmp_path))


@pytest.fixture
async def store(database: Database) -> AsyncIterator[SqlMetadataStore]:
    opened = await database.open()
    yield opened
    await opened.close()
