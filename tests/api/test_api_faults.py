"""Faults of the things fhirbin depends on, through the real app (docs/deployment.md, "Faults").

A database or content store that cannot be reached is a 503 OperationOutcome with Retry-After,
answered within seconds, never a 500 and never a hang; a full disk is a 507 with nothing left
behind; service resumes, on the same app, as soon as the dependency is back. The servers here are
private ones, stopped and started by the test: the shared session servers stay up.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from fhirbin.config import Settings, load_settings
from tests.pg_support import PostgresCluster
from tests.s3_support import Seaweed, start_seaweed
from tests.storage.support import tiny_filesystem
from tests.support import BASE, bearer_for, serving

pytestmark = pytest.mark.anyio

LARGE = os.urandom(200 * 1024)  # past the small-content cache: every read goes to the store


@pytest.fixture
def own_postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def own_seaweed(tmp_path: Path) -> Iterator[Seaweed]:
    with start_seaweed(tmp_path / "seaweed") as server:
        yield server


def _settings(tmp_path: Path, **values: object) -> Settings:
    return load_settings({}, {"data_dir": tmp_path / "data", "base_url": BASE, **values})


def _is_unavailable(answer: httpx.Response, dependency: str) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "5"
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "transient"
    assert dependency in outcome["issue"][0]["diagnostics"]


async def test_a_database_outage_is_503_and_service_resumes(
    tmp_path: Path, own_postgres: PostgresCluster, seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in seaweed.env.items():
        monkeypatch.setenv(name, value)
    settings = _settings(
        tmp_path,
        database_url=own_postgres.migrated_database(),
        storage_url=seaweed.fresh_url(),
        s3_endpoint_url=seaweed.endpoint,
        revocation_check_interval=0,
    )
    async with serving(settings) as (app, http):
        auth = await bearer_for(app, http)
        created = await http.post(
            "/fhir/Binary", content=LARGE, headers={**auth, "Content-Type": "image/png"}
        )
        assert created.status_code == 201
        location = created.headers["location"].split("/fhir/")[1].split("/_history")[0]
        own_postgres.stop()
        try:
            started = time.monotonic()
            _is_unavailable(await http.get(f"/fhir/{location}", headers=auth), "database")
            _is_unavailable(
                await http.post(
                    "/fhir/Binary", content=b"x", headers={**auth, "Content-Type": "a/b"}
                ),
                "database",
            )
            _is_unavailable(await http.get("/fhir/Binary?_id=x", headers=auth), "database")
            assert time.monotonic() - started < 30  # three answers, each within seconds
        finally:
            own_postgres.resume()
        again = await http.get(f"/fhir/{location}", headers=auth)
        assert (again.status_code, again.content) == (200, LARGE)


async def test_a_content_store_outage_is_503_and_service_resumes(
    tmp_path: Path, postgres: PostgresCluster, own_seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in own_seaweed.env.items():
        monkeypatch.setenv(name, value)
    settings = _settings(
        tmp_path,
        database_url=postgres.migrated_database(),
        storage_url=own_seaweed.fresh_url(),
        s3_endpoint_url=own_seaweed.endpoint,
    )
    async with serving(settings) as (app, http):
        auth = await bearer_for(app, http)
        created = await http.post(
            "/fhir/Binary", content=LARGE, headers={**auth, "Content-Type": "image/png"}
        )
        location = created.headers["location"].split("/fhir/")[1].split("/_history")[0]
        own_seaweed.stop()
        try:
            started = time.monotonic()
            _is_unavailable(await http.get(f"/fhir/{location}", headers=auth), "content store")
            _is_unavailable(
                await http.post(
                    "/fhir/Binary", content=LARGE[:-1], headers={**auth, "Content-Type": "a/b"}
                ),
                "content store",
            )
            assert time.monotonic() - started < 30
            count = await http.get("/fhir/Binary?_summary=count", headers=auth)
            assert count.json()["total"] == 1  # the refused upload left no version
        finally:
            own_seaweed.start()
        again = await http.get(f"/fhir/{location}", headers=auth)
        assert (again.status_code, again.content) == (200, LARGE)


async def test_a_full_disk_is_507_leaves_nothing_and_heals(tmp_path: Path) -> None:
    with tiny_filesystem(tmp_path / "tiny", size_kib=6 * 1024) as root:
        settings = _settings(root, max_binary_size=64 * 1024 * 1024)
        async with serving(settings) as (app, http):
            auth = await bearer_for(app, http)

            async def body() -> AsyncIterator[bytes]:
                for _ in range(16):
                    yield os.urandom(1024 * 1024)

            full = await http.post(
                "/fhir/Binary", content=body(), headers={**auth, "Content-Type": "a/b"}
            )
            assert full.status_code == 507, full.text
            assert full.json()["resourceType"] == "OperationOutcome"
            assert not list((root / "data" / "blobs" / "tmp").glob("*"))
            count = await http.get("/fhir/Binary?_summary=count", headers=auth)
            assert count.json()["total"] == 0
            small = await http.post(
                "/fhir/Binary", content=b"fits", headers={**auth, "Content-Type": "text/plain"}
            )
            assert small.status_code == 201
