"""Conditional reads, byte ranges and HEAD over the real app."""

from __future__ import annotations

import email.utils
import re
from datetime import timedelta

import httpx
import pytest

from tests.api.conftest import BACKENDS

pytestmark = pytest.mark.anyio


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """These run on the embedded stores and on PostgreSQL + S3."""
    param: str = request.param
    return param


CONTENT = bytes(range(256)) * 40  # 10240 bytes


@pytest.fixture
async def binary_id(client: httpx.AsyncClient, auth: dict[str, str]) -> str:
    response = await client.post(
        "/fhir/Binary",
        content=CONTENT,
        headers={**auth, "Content-Type": "application/octet-stream"},
    )
    return response.headers["location"].split("/Binary/")[1].split("/")[0]


async def get(
    client: httpx.AsyncClient, auth: dict[str, str], binary_id: str, **headers: str
) -> httpx.Response:
    return await client.get(f"/fhir/Binary/{binary_id}", headers={**auth, **headers})


@pytest.mark.parametrize("tag", ['W/"1"', '"1"', '"7", W/"1"', "*"])
async def test_if_none_match_current_is_304_with_validators(
    client: httpx.AsyncClient, auth: dict[str, str], binary_id: str, tag: str
) -> None:
    response = await get(client, auth, binary_id, **{"If-None-Match": tag})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == 'W/"1"'
    assert "last-modified" in response.headers
    assert response.headers["vary"] == "Accept"


async def test_if_none_match_other_version_is_200(
    client: httpx.AsyncClient, auth: dict[str, str], binary_id: str
) -> None:
    response = await get(client, auth, binary_id, **{"If-None-Match": 'W/"2"'})
    assert response.status_code == 200
    assert response.content == CONTENT


async def test_if_modified_since(
    client: httpx.AsyncClient, auth: dict[str, str], binary_id: str
) -> None:
    last_modified = (await get(client, auth, binary_id)).headers["last-modified"]
    assert (
        await get(client, auth, binary_id, **{"If-Modified-Since": last_modified})
    ).status_code == 304
    earlier = email.utils.parsedate_to_datetime(last_modified) - timedelta(seconds=10)
    older = email.utils.format_datetime(earlier, usegmt=True)
    assert (await get(client, auth, binary_id, **{"If-Modified-Since": older})).status_code == 200
    # If-None-Match wins over If-Modified-Since (RFC 9110 §13.1.3)
    both = await get(
        client, auth, binary_id, **{"If-None-Match": 'W/"9"', "If-Modified-Since": last_modified}
    )
    assert both.status_code == 200


async def test_fhir_form_is_conditional_too(
    client: httpx.AsyncClient, auth: dict[str, str], binary_id: str
) -> None:
    response = await get(
        client, auth, binary_id, Accept="application/fhir+json", **{"If-None-Match": 'W/"1"'}
    )
    assert response.status_code == 304


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 100),
        ("bytes=10000-", 10000, 10240),
        ("bytes=-40", 10200, 10240),
        ("bytes=100-999999", 100, 10240),
    ],
)
async def test_single_range_is_206(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    binary_id: str,
    header: str,
    start: int,
    end: int,
) -> None:
    response = await get(client, auth, binary_id, Range=header)
    assert response.status_code == 206
    assert response.content == CONTENT[start:end]
    assert response.headers["content-range"] == f"bytes {start}-{end - 1}/{len(CONTENT)}"
    assert response.headers["content-length"] == str(end - start)
    assert response.headers["content-type"] == "application/octet-stream"


async def test_native_reads_advertise_byte_ranges(
    client: httpx.AsyncClient, auth: dict[str, str], binary_id: str
) -> None:
    assert (await get(client, auth, binary_id)).headers["accept-ranges"] == "bytes"


async def test_several_ranges_are_multipart_byteranges(
    client: httpx.AsyncClient, auth: dict[str, str], binary_id: str
) -> None:
    response = await get(client, auth, binary_id, Range="bytes=0-9, 100-109")
    assert response.status_code == 206
    content_type = response.headers["content-type"]
    assert content_type.startswith("multipart/byteranges; boundary=")
    boundary = content_type.split("boundary=")[1].encode()
    assert int(response.headers["content-length"]) == len(response.content)
    parts = [p for p in response.content.split(b"--" + boundary) if p.strip(b"\r\n-")]
    assert len(parts) == 2
    for part, (start, end) in zip(parts, [(0, 10), (100, 110)], strict=True):
        head, _, body = part.partition(b"\r\n\r\n")
        assert f"Content-Range: bytes {start}-{end - 1}/{len(CONTENT)}".encode() in head
        assert (
            body.rstrip(b"\r\n") == CONTENT[start:end].rstrip(b"\r\n")
            or body[: end - start] == CONTENT[start:end]
        )


async def test_unsatisfiable_range_is_416(
    client: httpx.AsyncClient, auth: dict[str, str], binary_id: str
) -> None:
    response = await get(client, auth, binary_id, Range="bytes=20000-20010")
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(CONTENT)}"
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_if_range(client: httpx.AsyncClient, auth: dict[str, str], binary_id: str) -> None:
    same = await get(client, auth, binary_id, Range="bytes=0-9", **{"If-Range": 'W/"1"'})
    assert same.status_code == 206
    other = await get(client, auth, binary_id, Range="bytes=0-9", **{"If-Range": '"2"'})
    assert other.status_code == 200
    assert other.content == CONTENT
    last_modified = same.headers["last-modified"]
    dated = await get(client, auth, binary_id, Range="bytes=0-9", **{"If-Range": last_modified})
    assert dated.status_code == 206


async def test_head_everywhere_get_works(
    client: httpx.AsyncClient, auth: dict[str, str], binary_id: str
) -> None:
    for path in [
        f"/fhir/Binary/{binary_id}",
        f"/fhir/Binary/{binary_id}/_history/1",
        f"/fhir/Binary?_id={binary_id}",
        "/fhir/metadata",
    ]:
        got = await client.get(path, headers=auth)
        head = await client.head(path, headers=auth)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b""
        for name in ("content-type", "etag", "last-modified"):
            assert head.headers.get(name) == got.headers.get(name), (path, name)
        if "content-length" in got.headers:
            assert head.headers["content-length"] == got.headers["content-length"]
    fhir = await client.head(f"/fhir/Binary/{binary_id}?_format=json", headers=auth)
    assert int(fhir.headers["content-length"]) > len(CONTENT)


async def test_head_of_unknown_is_404_without_body(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.head("/fhir/Binary/unknown", headers=auth)
    assert response.status_code == 404
    assert response.content == b""
    assert re.match(r"application/fhir\+json", response.headers["content-type"])
