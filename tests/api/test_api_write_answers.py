"""What a create or update answers, per body kind and ``Prefer``
(docs/decisions.md#prefer-on-writes)."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.support import BASE

pytestmark = pytest.mark.anyio

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
}
CONTENT = b"%PDF-1.4 native content that must not be echoed"


async def _native(
    client: httpx.AsyncClient, auth: dict[str, str], method: str, url: str, **headers: str
) -> httpx.Response:
    return await client.request(
        method,
        url,
        content=CONTENT,
        headers={
            **auth,
            "Content-Type": "application/pdf",
            "X-Security-Context": "Patient/1",
            **headers,
        },
    )


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [("POST", "/fhir/Binary", 201), ("PUT", "/fhir/Binary/answers-1", 201)],
)
async def test_native_write_without_prefer_answers_id_and_meta_without_data(
    client: httpx.AsyncClient, auth: dict[str, str], method: str, url: str, status: int
) -> None:
    response = await _native(client, auth, method, url)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/fhir+json; charset=utf-8"
    body = response.json()
    binary_id = response.headers["location"].removeprefix(f"{BASE}/Binary/").split("/")[0]
    assert body["resourceType"] == "Binary"
    assert body["id"] == binary_id
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"]
    assert body["meta"]["tag"] == [SUBSETTED]
    assert body["contentType"] == "application/pdf"
    assert body["securityContext"] == {"reference": "Patient/1"}
    assert "data" not in body
    assert base64.b64encode(CONTENT) not in response.content
    assert response.headers["etag"] == 'W/"1"'
    # an update of the same id answers 200 the same way, with the new version
    again = await _native(client, auth, "PUT", f"/fhir/Binary/{binary_id}")
    assert again.status_code == 200
    assert again.json()["meta"]["versionId"] == "2"
    assert "data" not in again.json()


async def test_native_write_with_return_minimal_is_empty(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await _native(client, auth, "POST", "/fhir/Binary", Prefer="return=minimal")
    assert response.status_code == 201
    assert response.content == b""
    assert response.headers["location"].startswith(f"{BASE}/Binary/")
    put = await _native(client, auth, "PUT", "/fhir/Binary/answers-2", Prefer="return=minimal")
    assert (put.status_code, put.content) == (201, b"")


async def test_native_write_with_return_representation_is_the_whole_binary(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await _native(client, auth, "POST", "/fhir/Binary", Prefer="return=representation")
    assert response.status_code == 201
    body = response.json()
    assert base64.b64decode(body["data"]) == CONTENT
    assert "tag" not in body["meta"]


async def test_fhir_json_create_still_answers_the_whole_binary(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    resource = {"resourceType": "Binary", "contentType": "text/plain", "data": "aGk="}
    response = await client.post(
        "/fhir/Binary",
        content=json.dumps(resource),
        headers={**auth, "Content-Type": "application/fhir+json"},
    )
    assert response.status_code == 201
    assert response.json()["data"] == "aGk="
    assert "tag" not in response.json()["meta"]
