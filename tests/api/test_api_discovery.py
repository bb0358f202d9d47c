"""The public endpoints: CapabilityStatement and SMART configuration."""

from __future__ import annotations

import httpx
import pytest

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
