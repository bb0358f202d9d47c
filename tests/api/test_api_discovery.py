"""The public endpoints: CapabilityStatement and SMART configuration."""

from __future__ import annotations

import httpx
import pytest
from defusedxml.ElementTree import fromstring  # type: ignore[import-untyped,unused-ignore]

from tests.support import BASE

pytestmark = pytest.mark.anyio


async def test_metadata_is_public_and_lists_exactly_what_works(client: httpx.AsyncClient) -> None:
    response = await client.get("/fhir/metadata")
    assert response.status_code == 200
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["kind"] == "instance"
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["software"]["name"] == "fhirbin"
    assert set(statement["format"]) == {
        "application/fhir+json",
        "json",
        "application/fhir+xml",
        "xml",
    }
    (rest,) = statement["rest"]
    assert rest["security"]["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    binary, audit_event = rest["resource"]
    assert binary["type"] == "Binary"
    assert audit_event["type"] == "AuditEvent"
    assert [i["code"] for i in audit_event["interaction"]] == ["read", "search-type"]
    assert [p["name"] for p in audit_event["searchParam"]] == ["entity", "date"]
    assert sorted(i["code"] for i in binary["interaction"]) == [
        "create",
        "delete",
        "history-instance",
        "history-type",
        "read",
        "search-type",
        "update",
        "vread",
    ]
    assert [p["name"] for p in binary["searchParam"]] == ["_id", "_lastUpdated"]
    assert binary["versioning"] == "versioned-update"
    assert binary["readHistory"] is True
    assert binary["updateCreate"] is True
    assert binary["conditionalRead"] == "full-support"


OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


async def test_metadata_names_the_token_endpoint_in_smart_oauth_uris(
    client: httpx.AsyncClient,
) -> None:
    """fhirclient's backend-services login and fhir-kit-client read the token URL here."""
    security = (await client.get("/fhir/metadata")).json()["rest"][0]["security"]
    [ext] = [e for e in security["extension"] if e["url"] == OAUTH_URIS]
    assert ext["extension"] == [{"url": "token", "valueUri": f"{BASE}/auth/token"}]
    smart = (await client.get("/fhir/.well-known/smart-configuration")).json()
    assert smart["token_endpoint"] == f"{BASE}/auth/token"
    xml = await client.get("/fhir/metadata", params={"_format": "xml"})
    assert xml.status_code == 200
    ns = "{http://hl7.org/fhir}"
    root = fromstring(xml.content)
    [ext] = root.findall(f"{ns}rest/{ns}security/{ns}extension")
    assert ext.get("url") == OAUTH_URIS
    [token] = ext.findall(f"{ns}extension")
    assert token.get("url") == "token"
    assert token.find(f"{ns}valueUri").get("value") == f"{BASE}/auth/token"  # type: ignore[union-attr]


async def test_smart_configuration_is_public_json_with_absolute_urls(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(
        "/fhir/.well-known/smart-configuration", headers={"Accept": "text/html"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    config = response.json()
    assert config["token_endpoint"] == f"{BASE}/auth/token"
    assert config["jwks_uri"] == f"{BASE}/.well-known/jwks.json"
    assert config["grant_types_supported"] == ["client_credentials"]
    assert set(config["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    }
    # SMART client-confidential-asymmetric.html#discovery-requirements
    assert {"RS384", "ES384"} <= set(config["token_endpoint_auth_signing_alg_values_supported"])
    assert "client-confidential-asymmetric" in config["capabilities"]
    assert "system/Binary.rs" in config["scopes_supported"]
    assert "permission-v2" in config["capabilities"]
    assert config["code_challenge_methods_supported"] == ["S256"]
