"""Fixtures every test folder shares."""

from __future__ import annotations

import pytest

from tests.s3_support import seaweed  # noqa: F401  (the session's S3 server)


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio, the event loop fhirbin serves on."""
    return "asyncio"
