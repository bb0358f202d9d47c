"""FHIRBIN_ACCEL_REDIRECT in the planner (api/reading.py): which answers are a redirect for
nginx, in both lanes alike; nginx itself is in tests/e2e/test_e2e_accel_redirect.py."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from fhirbin.api import reads, searches
from fhirbin.config import Settings, load_settings
from fhirbin.runtime import accel_redirect
from tests.api.test_api_fastlane import GENERAL, general, hot, make_settings
from tests.support import BASE, bearer_for, serving

pytestmark = pytest.mark.anyio

PREFIX = "/_fhirbin_content/"
SETTINGS_OVERRIDES = {"accel_redirect": PREFIX}
LARGE = os.urandom(200 * 1024)  # above the 64 KiB kept in memory
SMALL = b"small\n"


async def create(http: httpx.AsyncClient, auth: dict[str, str], body: bytes) -> str:
    answer = await http.post(
        "/fhir/Binary", content=body, headers={**auth, "Content-Type": "application/octet-stream"}
    )
    assert answer.status_code == 201, answer.text
    return answer.headers["location"].split("/Binary/")[1].split("/")[0]


def blob_of(settings: Settings, redirect: str) -> Path:
    assert redirect.startswith(PREFIX)
    return settings.blob_dir / redirect.removeprefix(PREFIX)


async def check_answers(settings: Settings, http: httpx.AsyncClient, auth: dict[str, str]) -> None:
    """The same checks for either lane; ``auth`` decides which one answers."""
    large = await create(http, auth, LARGE)
    small = await create(http, auth, SMALL)
    url = f"/fhir/Binary/{large}"
    whole = await http.get(url, headers=auth)
    assert whole.status_code == 200
    assert whole.content == b""
    assert whole.headers["content-length"] == "0"
    assert blob_of(settings, whole.headers["x-accel-redirect"]).read_bytes() == LARGE
    head = await http.head(url, headers=auth)
    assert "x-accel-redirect" not in head.headers
    assert head.headers["content-length"] == str(len(LARGE))
    # every header of the whole answer but its length is the HEAD's (R4 http.html#head)
    drop = {"content-length", "x-accel-redirect", "x-request-id", "date"}
    assert {k: v for k, v in whole.headers.items() if k not in drop} == {
        k: v for k, v in head.headers.items() if k not in drop
    }
    vread = await http.get(f"{url}/_history/1", headers=auth)
    assert vread.headers["x-accel-redirect"] == whole.headers["x-accel-redirect"]
    for extra, status in (
        ({"Range": "bytes=0-9"}, 206),
        ({"If-None-Match": whole.headers["etag"]}, 304),
        ({"If-Match": whole.headers["etag"]}, 200),
        ({"If-Unmodified-Since": "Thu, 01 Jan 2099 00:00:00 GMT"}, 200),
    ):
        answer = await http.get(url, headers={**auth, **extra})
        assert answer.status_code == status, extra
        assert "x-accel-redirect" not in answer.headers, extra
        expected = {206: LARGE[:10], 304: b"", 200: LARGE}[status]
        assert answer.content == expected, extra
    fhir = await http.get(url, headers={**auth, "Accept": "application/fhir+json"})
    assert fhir.status_code == 200
    assert "x-accel-redirect" not in fhir.headers
    in_memory = await http.get(f"/fhir/Binary/{small}", headers=auth)
    assert in_memory.content == SMALL
    assert "x-accel-redirect" not in in_memory.headers


async def test_general_path(settings: Settings, client: httpx.AsyncClient, app: Starlette) -> None:
    # revocation_check_interval 0 (tests/api/conftest.py) keeps every request off the lane
    await check_answers(settings, client, await bearer_for(app, client))


async def test_fast_lane(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The general read handlers only say they ran (tests/api/test_api_fastlane.py): every
    answer checked here is the lane's."""
    monkeypatch.setattr(reads, "read", general)
    monkeypatch.setattr(reads, "vread", general)
    monkeypatch.setattr(searches, "search", general)
    settings = make_settings(tmp_path, accel_redirect=PREFIX)
    async with serving(settings) as (app, http):
        auth = {"Authorization": f"Bearer {(await hot(app))[0]}"}
        await check_answers(settings, http, auth)
        probe = await http.get(f"/fhir/Binary/{await create(http, auth, LARGE)}", headers=auth)
        assert probe.status_code != GENERAL


def test_setting_is_a_prefix_and_only_for_a_local_folder(tmp_path: Path) -> None:
    values = {"data_dir": tmp_path, "base_url": BASE}
    assert accel_redirect(load_settings({}, values)) is None
    on = load_settings({}, {**values, "accel_redirect": PREFIX})
    assert accel_redirect(on) == (PREFIX, tmp_path / "blobs")
    s3 = load_settings({}, {**values, "accel_redirect": PREFIX, "storage_url": "s3://b/p"})
    assert accel_redirect(s3) is None
    for bad in ("_fhirbin_content/", "/_fhirbin_content", "/a b/"):
        with pytest.raises(ValueError, match="FHIRBIN_ACCEL_REDIRECT"):
            load_settings({}, {**values, "accel_redirect": bad})
