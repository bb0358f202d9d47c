"""Create and read over the real app, a real SQLite file and a real blob folder."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette

from tests.api.conftest import BACKENDS
from tests.support import BASE, runtime_of

pytestmark = pytest.mark.anyio


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """These run on the embedded stores and on PostgreSQL + S3."""
    param: str = request.param
    return param


PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


async def create(
    client: httpx.AsyncClient, auth: dict[str, str], body: bytes, content_type: str, **headers: str
) -> httpx.Response:
    response = await client.post(
        "/fhir/Binary", content=body, headers={**auth, "Content-Type": content_type, **headers}
    )
    assert response.status_code == 201, response.text
    return response


def id_of(response: httpx.Response) -> str:
    location = response.headers["location"]
    assert location.startswith(f"{BASE}/Binary/")
    return location.removeprefix(f"{BASE}/Binary/").split("/")[0]


async def test_raw_create_answers_201_with_location_etag_and_last_modified(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await create(client, auth, PDF, "application/pdf")
    binary_id = id_of(response)
    assert response.headers["location"] == f"{BASE}/Binary/{binary_id}/_history/1"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["last-modified"].endswith(" GMT")
    # docs/decisions.md#prefer-on-writes: id and meta without data
    assert "data" not in response.json()
    assert binary_id == binary_id.lower()
    assert len(binary_id) == 36


async def test_native_read_returns_the_bytes_with_the_stored_content_type(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    binary_id = id_of(await create(client, auth, PDF, "application/pdf"))
    response = await client.get(f"/fhir/Binary/{binary_id}", headers=auth)
    assert response.status_code == 200
    assert response.content == PDF
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-length"] == str(len(PDF))
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["cache-control"] == "private"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["vary"] == "Accept"


async def test_content_type_parameters_are_kept_verbatim(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body = "caf\u00e9".encode("latin-1")
    binary_id = id_of(await create(client, auth, body, "text/plain; charset=ISO-8859-1"))
    response = await client.get(f"/fhir/Binary/{binary_id}", headers=auth)
    assert response.headers["content-type"] == "text/plain; charset=ISO-8859-1"
    assert response.content == body


@pytest.mark.parametrize(
    ("params", "accept", "fhir"),
    [
        ({}, None, False),
        ({}, "*/*", False),
        ({}, "application/json", False),
        ({}, "image/png", False),  # docs/decisions.md#other-accept-types-get-the-content
        ({}, "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),
        ({}, "application/fhir+json", True),
        ({}, "application/pdf;q=0.5, application/fhir+json", True),
        ({}, "application/fhir+json;q=0.5, application/pdf", False),
        ({}, "application/fhir+json, */*", False),  # tie goes to native
        ({"_format": "json"}, "application/pdf", True),
        ({"_format": "application/json"}, None, True),
        ({"_format": "application/fhir+json"}, "*/*", True),
    ],
)
async def test_negotiation_between_native_and_fhir_json(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    params: dict[str, str],
    accept: str | None,
    fhir: bool,
) -> None:
    binary_id = id_of(await create(client, auth, PDF, "application/pdf"))
    headers = dict(auth)
    if accept is not None:
        headers["Accept"] = accept
    response = await client.get(f"/fhir/Binary/{binary_id}", params=params, headers=headers)
    assert response.status_code == 200
    if fhir:
        assert response.headers["content-type"].startswith("application/fhir+json")
        assert base64.b64decode(response.json()["data"]) == PDF
    else:
        assert response.headers["content-type"] == "application/pdf"
        assert response.content == PDF


async def test_fhir_json_form_has_id_meta_content_type_security_context_and_data(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    created = await create(
        client, auth, PDF, "application/pdf", **{"X-Security-Context": "DocumentReference/123"}
    )
    binary_id = id_of(created)
    response = await client.get(f"/fhir/Binary/{binary_id}?_format=json", headers=auth)
    resource = response.json()
    assert resource["resourceType"] == "Binary"
    assert resource["id"] == binary_id
    assert resource["meta"]["versionId"] == "1"
    assert resource["meta"]["lastUpdated"].endswith("Z")
    assert resource["contentType"] == "application/pdf"
    assert resource["securityContext"] == {"reference": "DocumentReference/123"}
    assert base64.b64decode(resource["data"]) == PDF
    assert response.headers["content-length"] == str(len(response.content))
    assert response.headers["x-security-context"] == "DocumentReference/123"
    assert response.headers["etag"] == 'W/"1"'


async def test_native_read_echoes_x_security_context(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    ref = "https://example.org/fhir/Patient/42"
    binary_id = id_of(
        await create(client, auth, PDF, "application/pdf", **{"X-Security-Context": ref})
    )
    response = await client.get(f"/fhir/Binary/{binary_id}", headers=auth)
    assert response.headers["x-security-context"] == ref


async def test_fhir_json_body_that_is_a_binary_is_parsed(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    data = bytes([0xFB, 0xFF, 0xFE]) * 50  # base64 full of '+' and '/'
    body = {
        "resourceType": "Binary",
        "id": "client-chosen",
        "meta": {"versionId": "99"},
        "contentType": "image/png",
        "securityContext": {"reference": "Patient/7"},
        "data": base64.b64encode(data).decode(),
    }
    response = await client.post(
        "/fhir/Binary",
        content=json.dumps(body),
        headers={**auth, "Content-Type": "application/fhir+json"},
    )
    assert response.status_code == 201
    binary_id = id_of(response)
    assert binary_id != "client-chosen"  # R4 http.html#create: the body id is ignored
    # docs/decisions.md#prefer-on-writes: FHIR uploads get the representation
    assert response.json()["meta"]["versionId"] == "1"
    assert response.json()["id"] == binary_id
    native = await client.get(f"/fhir/Binary/{binary_id}", headers=auth)
    assert native.content == data
    assert native.headers["content-type"] == "image/png"
    assert native.headers["x-security-context"] == "Patient/7"


async def test_fhir_json_body_that_is_not_a_binary_is_stored_as_is(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    patient = b'{"resourceType":"Patient","id":"p1"}'
    binary_id = id_of(await create(client, auth, patient, "application/fhir+json"))
    response = await client.get(f"/fhir/Binary/{binary_id}", headers=auth)
    assert response.content == patient
    assert response.headers["content-type"] == "application/fhir+json"
    wrapped = await client.get(
        f"/fhir/Binary/{binary_id}", headers={**auth, "Accept": "application/fhir+json"}
    )
    assert wrapped.json()["resourceType"] == "Binary"
    assert base64.b64decode(wrapped.json()["data"]) == patient


@pytest.mark.parametrize(
    ("body", "expression"),
    [
        ({"resourceType": "Binary", "data": "AAAA"}, "contentType"),
        ({"resourceType": "Binary", "contentType": "text/plain", "data": "not base64!"}, "data"),
        (
            {
                "resourceType": "Binary",
                "contentType": "text/plain",
                "text": {"status": "generated"},
            },
            "text",
        ),
        ({"resourceType": "Binary", "contentType": "text/plain", "extension": []}, "extension"),
    ],
)
async def test_invalid_fhir_binary_bodies_are_400_and_store_nothing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    app: Starlette,
    body: dict[str, object],
    expression: str,
) -> None:
    response = await client.post(
        "/fhir/Binary",
        content=json.dumps(body),
        headers={**auth, "Content-Type": "application/fhir+json"},
    )
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert expression in json.dumps(outcome)
    assert await runtime_of(app).catalogue.current_all() == []


async def test_empty_body_is_a_binary_of_size_zero(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    binary_id = id_of(await create(client, auth, b"", "application/octet-stream"))
    response = await client.get(f"/fhir/Binary/{binary_id}", headers=auth)
    assert response.status_code == 200  # docs/decisions.md#empty-binary
    assert response.content == b""
    assert response.headers["content-length"] == "0"


async def test_identical_content_is_stored_once(
    client: httpx.AsyncClient, auth: dict[str, str], app: Starlette
) -> None:
    first = id_of(await create(client, auth, PDF, "application/pdf"))
    second = id_of(await create(client, auth, PDF, "application/pdf"))
    assert first != second
    blobs = runtime_of(app).blobs
    assert [blob.size async for blob in blobs.stored()] == [len(PDF)]
    assert await blobs.leftovers(0, remove=False) == []


async def test_oversized_upload_with_content_length_is_413_before_storing(
    client: httpx.AsyncClient, auth: dict[str, str], app: Starlette
) -> None:
    response = await client.post(
        "/fhir/Binary",
        content=b"x" * (1024 * 1024 + 1),
        headers={**auth, "Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 413
    assert response.json()["issue"][0]["code"] == "too-long"
    assert await runtime_of(app).catalogue.current_all() == []


async def test_oversized_chunked_upload_is_413_and_leaves_no_blob(
    client: httpx.AsyncClient, auth: dict[str, str], app: Starlette
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"y" * 65536

    response = await client.post(
        "/fhir/Binary",
        content=chunks(),
        headers={**auth, "Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 413
    blob_dir = runtime_of(app).settings.blob_dir
    assert [p for p in blob_dir.rglob("*") if p.is_file()] == []
    assert await runtime_of(app).catalogue.current_all() == []


async def test_missing_content_type_is_400(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    response = await client.post("/fhir/Binary", content=b"abc", headers=auth)
    assert response.status_code == 400
    assert "Content-Type" in response.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("value", ["", "not a ref"])
async def test_bad_x_security_context_is_400(
    client: httpx.AsyncClient, auth: dict[str, str], value: str
) -> None:
    response = await client.post(
        "/fhir/Binary",
        content=b"abc",
        headers={**auth, "Content-Type": "text/plain", "X-Security-Context": value},
    )
    assert response.status_code == 400


async def test_repeated_x_security_context_is_400(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    headers = [
        *auth.items(),
        ("Content-Type", "text/plain"),
        ("X-Security-Context", "Patient/1"),
        ("X-Security-Context", "Patient/2"),
    ]
    response = await client.post("/fhir/Binary", content=b"abc", headers=headers)
    assert response.status_code == 400


@pytest.mark.parametrize("bad_id", ["a" * 65, "has_underscore", "sp%20ace", "caf%C3%A9"])
async def test_malformed_ids_are_400(
    client: httpx.AsyncClient, auth: dict[str, str], bad_id: str
) -> None:
    response = await client.get(f"/fhir/Binary/{bad_id}", headers=auth)
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_encoded_slash_in_id_is_400(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    response = await client.get("/fhir/Binary/a%2Fb", headers=auth)
    assert response.status_code == 400


async def test_sixty_four_character_id_is_a_valid_unknown_id(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.get(f"/fhir/Binary/{'a' * 64}", headers=auth)
    assert response.status_code == 404
    assert response.json()["issue"][0]["code"] == "not-found"


async def test_ids_are_case_sensitive(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    binary_id = id_of(await create(client, auth, PDF, "application/pdf"))
    response = await client.get(f"/fhir/Binary/{binary_id.upper()}", headers=auth)
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("params", "accept"),
    [
        ({"_format": "nonsense"}, None),
        ({"_format": "html"}, None),
        ({"_format": "ttl"}, None),
    ],
)
async def test_unsupported_formats_are_406(
    client: httpx.AsyncClient, auth: dict[str, str], params: dict[str, str], accept: str | None
) -> None:
    binary_id = id_of(await create(client, auth, PDF, "application/pdf"))
    headers = {**auth, **({"Accept": accept} if accept else {})}
    response = await client.get(f"/fhir/Binary/{binary_id}", params=params, headers=headers)
    assert response.status_code == 406
    assert response.headers["content-type"].startswith("application/fhir+json")


async def test_head_has_the_headers_of_get_and_no_body(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    binary_id = id_of(await create(client, auth, PDF, "application/pdf"))
    response = await client.head(f"/fhir/Binary/{binary_id}", headers=auth)
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(len(PDF))
    assert response.headers["etag"] == 'W/"1"'


async def test_prefer_operation_outcome_on_create(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await create(client, auth, PDF, "application/pdf", Prefer="return=OperationOutcome")
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_prefer_representation_on_native_create_returns_the_fhir_binary(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await create(client, auth, PDF, "application/pdf", Prefer="return=representation")
    assert response.json()["resourceType"] == "Binary"
    assert base64.b64decode(response.json()["data"]) == PDF
    assert response.headers["location"].endswith("/_history/1")
    assert response.headers.get_list("etag") == ['W/"1"']


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
async def test_a_binary_resource_sent_as_generic_json_is_parsed(
    client: httpx.AsyncClient, auth: dict[str, str], content_type: str
) -> None:
    """fhirpy and other requests-based clients send FHIR JSON as application/json."""
    body = {"resourceType": "Binary", "contentType": "text/plain", "data": "aGk="}
    response = await client.post(
        "/fhir/Binary", content=json.dumps(body), headers={**auth, "Content-Type": content_type}
    )
    assert response.status_code == 201
    assert response.json()["id"]
    native = await client.get(f"/fhir/Binary/{response.json()['id']}", headers=auth)
    assert native.content == b"hi"
    assert native.headers["content-type"] == "text/plain"


async def test_other_generic_json_is_stored_as_is(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body = b'{"hello": "world"}'
    binary_id = id_of(await create(client, auth, body, "application/json"))
    assert (await client.get(f"/fhir/Binary/{binary_id}", headers=auth)).content == body
