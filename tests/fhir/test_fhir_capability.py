"""fhirbin.fhir.capability: the R4 CapabilityStatement and its invariants."""

from __future__ import annotations

from typing import Any

import pytest

from fhirbin.fhir.capability import capability_statement

BASE = "https://fhir.example.org/fhir"
SEARCH = [("_id", "token", "Logical id"), ("_lastUpdated", "date", "")]


def _statement(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "base_url": BASE,
        "software_version": "0.1.0",
        "date": "2026-11-26",
        "formats": ["application/fhir+json", "json"],
        "interactions": ["read", "vread", "create", "search-type"],
        "search_params": SEARCH,
    }
    return capability_statement(**(args | overrides))


def test_statement_satisfies_cpb_1_2_9_12_14() -> None:
    cs = _statement()
    # cpb-1: rest, messaging or document.
    assert cs.get("rest") or cs.get("messaging") or cs.get("document")
    # cpb-2: description, software or implementation.
    assert cs.get("description") or cs.get("software") or cs.get("implementation")
    # cpb-14: kind=instance => implementation, whose description is 1..1.
    assert cs["kind"] == "instance"
    assert cs["implementation"]["description"]
    assert cs["implementation"]["url"] == BASE
    for rest in cs["rest"]:
        types = [r["type"] for r in rest["resource"]]
        assert len(types) == len(set(types))  # cpb-9
        for resource in rest["resource"]:
            names = [p["name"] for p in resource.get("searchParam", [])]
            assert len(names) == len(set(names))  # cpb-12


def test_required_elements_and_values() -> None:
    cs = _statement()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["status"] == "active"
    assert cs["date"] == "2026-11-26"
    assert cs["fhirVersion"] == "4.0.1"
    assert cs["format"] == ["application/fhir+json", "json"]
    assert cs["software"] == {"name": "fhirbin", "version": "0.1.0"}


def test_rest_is_a_smart_secured_server_serving_binary() -> None:
    rest = _statement()["rest"]
    assert len(rest) == 1
    assert rest[0]["mode"] == "server"
    coding = rest[0]["security"]["service"][0]["coding"][0]
    assert coding["system"] == "http://terminology.hl7.org/CodeSystem/restful-security-service"
    assert coding["code"] == "SMART-on-FHIR"
    assert f"{BASE}/.well-known/smart-configuration" in rest[0]["security"]["description"]
    (resource,) = rest[0]["resource"]
    assert resource["type"] == "Binary"
    assert resource["interaction"] == [
        {"code": "read"},
        {"code": "vread"},
        {"code": "create"},
        {"code": "search-type"},
    ]
    assert resource["searchParam"] == [
        {
            "name": "_id",
            "definition": "http://hl7.org/fhir/SearchParameter/Resource-id",
            "type": "token",
            "documentation": "Logical id",
        },
        {
            "name": "_lastUpdated",
            "definition": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated",
            "type": "date",
        },
    ]


def test_resource_declarations_default_to_what_is_not_implemented() -> None:
    (resource,) = _statement()["rest"][0]["resource"]
    assert resource["versioning"] == "versioned"
    assert resource["readHistory"] is False
    assert resource["updateCreate"] is False
    assert resource["conditionalRead"] == "not-supported"


def test_resource_declarations_follow_the_keyword_arguments() -> None:
    cs = _statement(
        versioning="versioned-update",
        read_history=True,
        update_create=True,
        conditional_read="full-support",
    )
    (resource,) = cs["rest"][0]["resource"]
    assert resource["versioning"] == "versioned-update"
    assert resource["readHistory"] is True
    assert resource["updateCreate"] is True
    assert resource["conditionalRead"] == "full-support"


def test_no_empty_arrays_when_nothing_is_listed() -> None:
    (resource,) = _statement(interactions=[], search_params=[])["rest"][0]["resource"]
    assert "interaction" not in resource
    assert "searchParam" not in resource


@pytest.mark.parametrize(
    "overrides",
    [
        {"interactions": ["read", "transaction"]},
        {"interactions": ["read", "read"]},
        {"search_params": [("_id", "token", ""), ("_id", "token", "")]},  # cpb-12
        {"search_params": [("_id", "identifier", "")]},
        {"formats": []},
        {"date": "26 Nov 2026"},
        {"versioning": "sometimes"},
        {"conditional_read": "maybe"},
    ],
)
def test_statements_outside_the_r4_value_sets_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (each case has its own message)
        _statement(**overrides)


OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def test_oauth_uris_extension_names_the_token_endpoint_and_no_authorize() -> None:
    security = _statement(token_url=f"{BASE}/auth/token")["rest"][0]["security"]
    assert list(security) == ["extension", "service", "description"]  # R4 element order
    [ext] = security["extension"]
    assert ext == {
        "url": OAUTH_URIS,
        "extension": [{"url": "token", "valueUri": f"{BASE}/auth/token"}],
    }


def test_oauth_uris_names_authorize_only_when_given() -> None:
    security = _statement(token_url="https://a/t", authorize_url="https://a/z")["rest"][0][
        "security"
    ]
    inner = security["extension"][0]["extension"]
    assert inner == [
        {"url": "token", "valueUri": "https://a/t"},
        {"url": "authorize", "valueUri": "https://a/z"},
    ]
    assert "extension" not in _statement()["rest"][0]["security"]
