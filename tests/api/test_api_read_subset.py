"""``_summary`` and ``_elements`` on read and vread (R4 http.html#read): applied to the FHIR
form, never to the native content."""

from __future__ import annotations

import base64

import httpx
import pytest

pytestmark = pytest.mark.anyio

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
}
CONTENT = b"%PDF-1.4 read subsets"
FHIR_JSON = {"Accept": "application/fhir+json"}


async def _created(client: httpx.AsyncClient, auth: dict[str, str]) -> str:
    response = await client.post(
        "/fhir/Binary",
        content=CONTENT,
        headers={
            **auth,
            "Content-Type": "application/pdf",
            "X-Security-Context": "Patient/9",
            "Prefer": "return=minimal",
        },
    )
    assert response.status_code == 201
    return response.headers["location"].split("/Binary/")[1].split("/")[0]


async def _read(
    client: httpx.AsyncClient, auth: dict[str, str], url: str, **params: str
) -> httpx.Response:
    response = await client.get(url, params=params, headers={**auth, **FHIR_JSON})
    assert response.status_code == 200, response.text
    assert response.headers["content-length"] == str(len(response.content))
    return response


@pytest.mark.parametrize("history", [False, True], ids=["read", "vread"])
@pytest.mark.parametrize("value", ["true", "text"])
async def test_summary_true_leaves_data_out_and_tags_subsetted(
    client: httpx.AsyncClient, auth: dict[str, str], history: bool, value: str
) -> None:
    binary_id = await _created(client, auth)
    url = f"/fhir/Binary/{binary_id}" + ("/_history/1" if history else "")
    body = (await _read(client, auth, url, _summary=value)).json()
    assert "data" not in body
    assert body["meta"]["tag"] == [SUBSETTED]
    assert body["contentType"] == "application/pdf"
    assert body["securityContext"] == {"reference": "Patient/9"}


@pytest.mark.parametrize("value", ["false", "data"])
async def test_summary_false_is_the_whole_binary(
    client: httpx.AsyncClient, auth: dict[str, str], value: str
) -> None:
    binary_id = await _created(client, auth)
    body = (await _read(client, auth, f"/fhir/Binary/{binary_id}", _summary=value)).json()
    assert base64.b64decode(body["data"]) == CONTENT
    assert "tag" not in body["meta"]


async def test_elements_selects_elements(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    binary_id = await _created(client, auth)
    url = f"/fhir/Binary/{binary_id}/_history/1"
    only_type = (await _read(client, auth, url, _elements="contentType")).json()
    assert set(only_type) == {"resourceType", "id", "meta", "contentType"}
    assert only_type["meta"]["tag"] == [SUBSETTED]
    with_data = (await _read(client, auth, url, _elements="data")).json()
    assert base64.b64decode(with_data["data"]) == CONTENT
    assert "securityContext" not in with_data
    assert with_data["meta"]["tag"] == [SUBSETTED]
    everything = (await _read(client, auth, url, _elements="data,securityContext")).json()
    assert "tag" not in everything["meta"]
    assert everything["securityContext"] == {"reference": "Patient/9"}


async def test_summary_in_fhir_xml(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    binary_id = await _created(client, auth)
    response = await client.get(
        f"/fhir/Binary/{binary_id}", params={"_summary": "true", "_format": "xml"}, headers=auth
    )
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(response.content))
    assert b"<data " not in response.content
    assert b'<code value="SUBSETTED"/>' in response.content


async def test_the_native_form_ignores_them(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    binary_id = await _created(client, auth)
    for params in ({"_summary": "true"}, {"_elements": "contentType"}):
        response = await client.get(f"/fhir/Binary/{binary_id}", params=params, headers=auth)
        assert response.status_code == 200
        assert response.content == CONTENT


@pytest.mark.parametrize(
    "query",
    ["_summary=count", "_summary=bogus", "_elements=nothing", "_summary=true&_summary=false"],
)
async def test_invalid_values_are_400(
    client: httpx.AsyncClient, auth: dict[str, str], query: str
) -> None:
    binary_id = await _created(client, auth)
    for accept in (FHIR_JSON, {}):
        response = await client.get(f"/fhir/Binary/{binary_id}?{query}", headers={**auth, **accept})
        assert response.status_code == 400, response.text
        assert response.json()["resourceType"] == "OperationOutcome"
