"""A body declared FHIR JSON or FHIR XML that does not parse is a 400, never stored
(docs/decisions.md#fhir-bodies-must-parse)."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette

from tests.support import runtime_of

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/fhir+json", b'{"resourceType":"Binary","contentType":"text/pl'),
        ("application/fhir+json", b"\x00\x01garbage\xff"),
        ("application/fhir+json; fhirVersion=4.0", b"not json at all"),
        ("application/json+fhir", b"[1, 2,"),
        ("application/fhir+xml", b'<Binary xmlns="http://hl7.org/fhir"><contentType value="a/b"'),
        ("application/fhir+xml", b"just some text"),
        ("application/fhir+xml", b"\xff\xfe<Binary/>"),
    ],
)
async def test_garbage_declared_as_fhir_is_400_and_stores_nothing(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    app: Starlette,
    content_type: str,
    body: bytes,
) -> None:
    for method, url in (("POST", "/fhir/Binary"), ("PUT", "/fhir/Binary/garbage-1")):
        response = await client.request(
            method, url, content=body, headers={**auth, "Content-Type": content_type}
        )
        assert response.status_code == 400, response.text
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        issue = outcome["issue"][0]
        assert issue["code"] == "structure"
        assert "not well-formed" in issue["diagnostics"]
    assert await runtime_of(app).catalogue.current_all() == []


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b"not json, but only generic JSON was declared"),
        ("application/xml", b"not xml, but only generic XML was declared"),
        ("application/fhir+json", b'{"resourceType":"Patient","id":"p1"}'),
        ("application/fhir+xml", b'<Patient xmlns="http://hl7.org/fhir"><id value="p"/></Patient>'),
        ("application/fhir+json", b""),
    ],
)
async def test_well_formed_non_binaries_and_generic_types_are_still_stored_as_is(
    client: httpx.AsyncClient, auth: dict[str, str], content_type: str, body: bytes
) -> None:
    response = await client.post(
        "/fhir/Binary", content=body, headers={**auth, "Content-Type": content_type}
    )
    assert response.status_code == 201, response.text
    binary_id = response.headers["location"].split("/Binary/")[1].split("/")[0]
    native = await client.get(f"/fhir/Binary/{binary_id}", headers=auth)
    assert native.content == body
