"""Fixtures every test folder shares."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pg_support import PostgresCluster, PostgresMissing
from tests.s3_support import seaweed  # noqa: F401  (the session's S3 server)


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio, the event loop fhirbin serves on."""
    return "asyncio"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A private PostgreSQL cluster for the session; ``new_database()`` gives each test its own
    database. Missing PostgreSQL binaries fail the test (scripts/system-deps.sh installs them)."""
    try:
        cluster = PostgresCluster.start()
    except PostgresMissing as error:
        pytest.fail(str(error))
    try:
        yield cluster
    finally:
        cluster.destroy()
