"""FHIR XML on the wire: reads, Bundles, errors, CapabilityStatement and XML bodies."""

from __future__ import annotations

import base64

import httpx
import pytest
from defusedxml import ElementTree

from tests.security.samples import PNG

pytestmark = pytest.mark.anyio

NS = {"f": "http://hl7.org/fhir"}


async def post(client: httpx.AsyncClient, auth: dict[str, str], body: bytes = b"hello") -> str:
    response = await client.post(
        "/fhir/Binary", content=body, headers={**auth, "Content-Type": "text/plain"}
    )
    return response.headers["location"].split("/Binary/")[1].split("/")[0]


@pytest.mark.parametrize(
    ("params", "accept"),
    [
        ({"_format": "xml"}, None),
        ({"_format": "text/xml"}, None),
        ({"_format": "application/xml"}, "application/fhir+json"),
        ({"_format": "application/fhir+xml"}, None),
        ({}, "application/fhir+xml"),
    ],
)
async def test_xml_form_of_a_binary(
    client: httpx.AsyncClient, auth: dict[str, str], params: dict[str, str], accept: str | None
) -> None:
    binary_id = await post(client, auth)
    headers = {**auth, **({"Accept": accept} if accept else {})}
    response = await client.get(f"/fhir/Binary/{binary_id}", params=params, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+xml")
    assert response.headers["content-length"] == str(len(response.content))
    root = ElementTree.fromstring(response.content)
    assert root.tag == "{http://hl7.org/fhir}Binary"
    assert root.find("f:id", NS).get("value") == binary_id  # type: ignore[union-attr]
    data = root.find("f:data", NS).get("value")  # type: ignore[union-attr]
    assert base64.b64decode(data or "") == b"hello"


async def test_generic_xml_accept_still_gets_native_bytes(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    binary_id = await post(client, auth)
    response = await client.get(
        f"/fhir/Binary/{binary_id}", headers={**auth, "Accept": "application/xml"}
    )
    assert response.content == b"hello"


async def test_search_bundle_in_xml(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    binary_id = await post(client, auth)
    response = await client.get(f"/fhir/Binary?_id={binary_id}&_format=xml", headers=auth)
    root = ElementTree.fromstring(response.content)
    assert root.tag == "{http://hl7.org/fhir}Bundle"
    assert root.find("f:type", NS).get("value") == "searchset"  # type: ignore[union-attr]
    assert root.find("f:total", NS).get("value") == "1"  # type: ignore[union-attr]
    binary = root.find("f:entry/f:resource/f:Binary", NS)
    assert binary is not None
    assert binary.find("f:id", NS).get("value") == binary_id  # type: ignore[union-attr]


async def test_errors_come_in_xml_when_xml_is_asked_for(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.get("/fhir/Binary/unknown?_format=xml", headers=auth)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/fhir+xml")
    assert ElementTree.fromstring(response.content).tag == "{http://hl7.org/fhir}OperationOutcome"


async def test_capability_statement_in_xml(client: httpx.AsyncClient) -> None:
    response = await client.get("/fhir/metadata", headers={"Accept": "application/fhir+xml"})
    root = ElementTree.fromstring(response.content)
    assert root.tag == "{http://hl7.org/fhir}CapabilityStatement"


async def test_xml_binary_body_is_parsed(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    body = (
        '<Binary xmlns="http://hl7.org/fhir"><contentType value="image/png"/>'
        f'<data value="{base64.b64encode(PNG).decode()}"/></Binary>'
    ).encode()
    response = await client.post(
        "/fhir/Binary",
        content=body,
        headers={**auth, "Content-Type": "application/fhir+xml", "Accept": "application/fhir+xml"},
    )
    assert response.status_code == 201
    assert (
        ElementTree.fromstring(response.content).tag == "{http://hl7.org/fhir}Binary"
    )  # representation, in XML
    location = response.headers["location"]
    native = await client.get(location.removeprefix("http://testserver"), headers=auth)
    assert native.content == PNG
    assert native.headers["content-type"] == "image/png"


async def test_xml_body_with_an_entity_is_refused(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<Binary xmlns="http://hl7.org/fhir"><contentType value="text/plain"/><data value="&e;"/></Binary>"""
    response = await client.post(
        "/fhir/Binary", content=body, headers={**auth, "Content-Type": "application/fhir+xml"}
    )
    assert response.status_code == 400
    assert "root:" not in response.text


async def test_pretty_json_and_xml(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    binary_id = await post(client, auth)
    compact = await client.get(f"/fhir/Binary/{binary_id}?_format=json", headers=auth)
    pretty = await client.get(f"/fhir/Binary/{binary_id}?_format=json&_pretty=true", headers=auth)
    assert pretty.json() == compact.json()
    assert b"\n  " in pretty.content
    assert b"\n" not in compact.content
    assert pretty.headers["content-length"] == str(len(pretty.content))
    pretty_xml = await client.get(
        f"/fhir/Binary/{binary_id}?_format=xml&_pretty=true", headers=auth
    )
    assert b"\n  <" in pretty_xml.content
    assert pretty_xml.headers["content-length"] == str(len(pretty_xml.content))


async def test_fhir_version_parameter(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    binary_id = await post(client, auth)
    ok = await client.get(
        f"/fhir/Binary/{binary_id}",
        headers={**auth, "Accept": "application/fhir+json; fhirVersion=4.0"},
    )
    assert ok.json()["resourceType"] == "Binary"
    other = await client.get(
        f"/fhir/Binary/{binary_id}",
        headers={**auth, "Accept": "application/fhir+json; fhirVersion=3.0"},
    )
    assert other.status_code == 406
    body = b'{"resourceType":"Binary","contentType":"text/plain","data":"eA=="}'
    refused = await client.post(
        "/fhir/Binary",
        content=body,
        headers={**auth, "Content-Type": "application/fhir+json; fhirVersion=5.0"},
    )
    assert refused.status_code == 415
