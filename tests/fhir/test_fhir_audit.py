"""fhir/audit.py: BALP-shaped AuditEvents, request classification, AuditEvent search params."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pytest
from defusedxml import ElementTree

from fhirbin.errors import BadRequest
from fhirbin.fhir.audit import (
    Interaction,
    audit_event,
    classify,
    outcome_for,
    parse_audit_search,
)
from fhirbin.fhir.capability import capability_statement
from fhirbin.fhir.dates import parse_date
from fhirbin.fhir.xml_write import resource_to_xml

SERVER = "https://fhir.example.org/fhir"
NS = "{http://hl7.org/fhir}"


@dataclass(frozen=True)
class Facts:
    """Any object with AuditRecord's attributes will do (fhir/ never imports metadata/)."""

    id: str = "0d7c1e3a-5b7e-4c1a-9f00-000000000001"
    recorded: datetime = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    action: str = "R"
    subtype: str = "read"
    outcome: str = "0"
    status: int = 200
    client_id: str | None = "app-1"
    subject: str | None = "someone"
    source: str | None = "192.0.2.7"
    entity: str | None = "Binary/abc"
    entity_version: int | None = 2
    query: str | None = None
    bytes_sent: int | None = 1234
    detail: str | None = None
    request_id: str | None = "req-1"
    patient: str | None = None


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/Binary/abc", Interaction("R", "read", "Binary/abc")),
        ("HEAD", "/Binary/abc", Interaction("R", "read", "Binary/abc")),
        ("GET", "/Binary/abc/_history/3", Interaction("R", "vread", "Binary/abc", 3)),
        ("GET", "/Binary/abc/_history/x", Interaction("R", "vread", "Binary/abc", None)),
        ("GET", "/Binary/abc/_history/99999999999", Interaction("R", "vread", "Binary/abc")),
        ("GET", "/Binary/abc/_history", Interaction("R", "history-instance", "Binary/abc")),
        ("GET", "/Binary/_history", Interaction("E", "history-type")),
        ("GET", "/Binary", Interaction("E", "search-type")),
        ("GET", "/Binary/", Interaction("E", "search-type")),
        ("POST", "/Binary/_search", Interaction("E", "search-type")),
        ("POST", "/Binary", Interaction("C", "create")),
        ("PUT", "/Binary/abc", Interaction("U", "update", "Binary/abc")),
        ("PATCH", "/Binary/abc", Interaction("U", "patch", "Binary/abc")),
        ("DELETE", "/Binary/abc", Interaction("D", "delete", "Binary/abc")),
        ("GET", "/AuditEvent", Interaction("E", "search-type")),
        ("GET", "/AuditEvent/e1", Interaction("R", "read", "AuditEvent/e1")),
        ("POST", "/auth/token", Interaction("E", "login")),
        # A malformed id is never stored as an entity.
        ("GET", "/Binary/" + "x" * 65, Interaction("R", "read")),
        ("GET", "/Binary/a b", Interaction("R", "read")),
        # Anything else is an operation.
        ("GET", "", Interaction("E", "operation")),
        ("GET", "/binary/abc", Interaction("E", "operation")),
        ("GET", "/Binary/$meta", Interaction("E", "operation")),
        ("POST", "/Binary/abc", Interaction("E", "operation", "Binary/abc")),
        ("POST", "/Binary/abc/$expunge", Interaction("E", "operation", "Binary/abc")),
        ("GET", "/Binary/abc/_history/1/more", Interaction("E", "operation")),
        ("PUT", "/Binary", Interaction("E", "operation")),
        ("GET", "/" + "A" * 60, Interaction("E", "operation")),
    ],
)
def test_classify(method: str, path: str, expected: Interaction) -> None:
    assert classify(method, path) == expected


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "0"), (201, "0"), (204, "0"), (304, "0"), (400, "4"), (499, "4"), (500, "8")],
)
def test_outcome_for(status: int, outcome: str) -> None:
    assert outcome_for(status) == outcome


def test_a_read_is_a_balp_read_event() -> None:
    event = audit_event(Facts(patient="p1"), server=SERVER)
    assert event["resourceType"] == "AuditEvent"
    assert event["id"] == Facts.id
    assert event["type"]["system"] == "http://terminology.hl7.org/CodeSystem/audit-event-type"
    assert event["type"]["code"] == "rest"
    assert event["subtype"] == [
        {"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}
    ]
    assert event["action"] == "R"
    assert event["recorded"] == "2026-01-02T03:04:05.678000Z"
    assert event["outcome"] == "0"
    assert "outcomeDesc" not in event
    client, server = event["agent"]
    assert client["type"]["coding"][0]["code"] == "110153"
    assert client["who"] == {"identifier": {"value": "app-1"}}
    assert client["altId"] == "someone"
    assert client["requestor"] is True
    assert client["network"] == {"address": "192.0.2.7", "type": "2"}
    assert server["type"]["coding"][0]["code"] == "110152"
    assert server["requestor"] is False
    assert server["network"] == {"address": SERVER, "type": "5"}
    assert event["source"]["observer"] == {"display": "fhirbin"}
    assert event["source"]["type"][0]["code"] == "4"
    data, patient, transaction = event["entity"]
    assert data["what"] == {"reference": "Binary/abc/_history/2"}
    assert (data["type"]["code"], data["role"]["code"]) == ("2", "4")
    assert patient["what"] == {"reference": "Patient/p1"}
    assert (patient["type"]["code"], patient["role"]["code"]) == ("1", "1")
    assert transaction["what"] == {"identifier": {"value": "req-1"}}
    assert transaction["type"]["code"] == "XrequestId"
    assert transaction["detail"] == [
        {"type": "http-status", "valueString": "200"},
        {"type": "bytes-sent", "valueString": "1234"},
    ]


def test_a_refused_anonymous_request_has_no_who() -> None:
    facts = Facts(
        client_id=None,
        subject=None,
        outcome="4",
        status=401,
        detail="This endpoint needs an access token.",
        source="testclient",
        entity_version=None,
        bytes_sent=None,
    )
    event = audit_event(facts, server=SERVER)
    client = event["agent"][0]
    assert "who" not in client
    assert "altId" not in client
    assert client["network"] == {"address": "testclient", "type": "1"}  # a machine name
    assert event["outcome"] == "4"
    assert event["outcomeDesc"] == "This endpoint needs an access token."
    data, transaction = event["entity"]
    assert data["what"] == {"reference": "Binary/abc"}
    assert transaction["detail"] == [{"type": "http-status", "valueString": "401"}]


def test_a_search_carries_its_query_base64() -> None:
    facts = Facts(action="E", subtype="search-type", entity=None, query="_id=a,b&_count=5")
    event = audit_event(facts, server=SERVER)
    query, _transaction = event["entity"]
    assert base64.b64decode(query["query"]) == b"_id=a,b&_count=5"
    assert query["role"]["code"] == "24"
    empty = audit_event(replace(facts, query=""), server=SERVER)
    assert "query" not in empty["entity"][0]  # FHIR has no empty strings


def test_the_token_endpoint_is_a_login_event() -> None:
    event = audit_event(Facts(action="E", subtype="login", entity=None), server=SERVER)
    assert event["type"]["code"] == "110114"
    assert event["subtype"][0]["code"] == "110122"


def test_a_patient_claim_with_its_type_is_not_doubled() -> None:
    event = audit_event(Facts(patient="Patient/7"), server=SERVER)
    assert event["entity"][1]["what"] == {"reference": "Patient/7"}


def test_audit_events_have_no_empty_values() -> None:
    def walk(value: object) -> None:
        assert value not in ("", [], {}, None)
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(audit_event(Facts(), server=SERVER))
    walk(
        audit_event(
            Facts(
                client_id=None,
                subject=None,
                source=None,
                request_id=None,
                entity=None,
                bytes_sent=None,
            ),
            server=SERVER,
        )
    )


@pytest.mark.parametrize("pretty", [False, True])
def test_audit_events_have_an_xml_form_in_definition_order(pretty: bool) -> None:
    facts = Facts(query="_id=a", detail="refused <because>", patient="p1", outcome="4")
    event = audit_event(facts, server=SERVER)
    root = ElementTree.fromstring(resource_to_xml(event, pretty=pretty))
    assert root.tag == f"{NS}AuditEvent"
    names = [child.tag.removeprefix(NS) for child in root]
    assert names == [
        "id",
        "type",
        "subtype",
        "action",
        "recorded",
        "outcome",
        "outcomeDesc",
        "agent",
        "agent",
        "source",
        "entity",
        "entity",
        "entity",
        "entity",
    ]
    agent = root.find(f"{NS}agent")
    assert agent is not None
    assert [c.tag.removeprefix(NS) for c in agent] == [
        "type",
        "who",
        "altId",
        "requestor",
        "network",
    ]
    desc = root.find(f"{NS}outcomeDesc")
    assert desc is not None
    assert desc.get("value") == "refused <because>"
    entity = root.findall(f"{NS}entity")[-1]
    assert [c.tag.removeprefix(NS) for c in entity] == ["what", "type", "detail", "detail"]


def test_the_json_form_round_trips() -> None:
    event = audit_event(Facts(), server=SERVER)
    assert json.loads(json.dumps(event)) == event


# --- search parameters ------------------------------------------------------------------


def test_search_parameters() -> None:
    search = parse_audit_search(
        [
            ("entity", "Binary/abc"),
            ("date", "ge2026-01-01"),
            ("date", "lt2026-02"),
            ("_count", "5"),
            ("_format", "json"),
            ("unknown", "x"),
            ("entity:missing", ""),  # empty values are ignored, modifier or not
        ],
        strict=False,
    )
    assert search.entity == "Binary/abc"
    assert search.since_us == parse_date("2026-01-01").lower_us
    assert search.until_us == parse_date("2026-02").lower_us
    assert search.count == 5
    assert search.page is None
    assert search.used == [
        ("entity", "Binary/abc"),
        ("date", "ge2026-01-01"),
        ("date", "lt2026-02"),
        ("_count", "5"),
    ]


def test_search_defaults_and_caps() -> None:
    search = parse_audit_search([], strict=True)
    assert (search.entity, search.since_us, search.until_us, search.count) == (None, None, None, 20)
    assert parse_audit_search([("_count", "5000")], strict=False, max_count=1000).count == 1000
    assert parse_audit_search([("_page", "abc")], strict=False).page == "abc"


def test_date_prefixes_fold_into_one_window() -> None:
    day = parse_date("2026-01-01")
    eq = parse_audit_search([("date", "2026-01-01")], strict=False)
    assert (eq.since_us, eq.until_us) == (day.lower_us, day.upper_us)
    gt = parse_audit_search([("date", "gt2026-01-01"), ("date", "ge2025")], strict=False)
    assert (gt.since_us, gt.until_us) == (day.upper_us, None)
    le = parse_audit_search([("date", "le2026-01-01")], strict=False)
    assert (le.since_us, le.until_us) == (None, day.upper_us)


@pytest.mark.parametrize(
    ("params", "expression"),
    [
        ([("date", "ne2026-01-01")], "http.date"),
        ([("date", "2026-01-01,2026-01-02")], "http.date"),
        ([("date", "xx2026")], "http.date"),
        ([("date", "yesterday")], "http.date"),
        ([("entity", "Binary/a,Binary/b")], "http.entity"),
        ([("entity", "Binary/a"), ("entity", "Binary/a")], "http.entity"),
        ([("entity", "abc")], "http.entity"),
        ([("entity", "Binary/")], "http.entity"),
        ([("entity", "binary/abc")], "http.entity"),
        ([("entity", "Binary/abc/_history/1")], "http.entity"),
        ([("entity", "https://x.example/fhir/Binary/abc")], "http.entity"),
        ([("entity:Binary", "abc")], "http.entity:Binary"),
        ([("_count", "-1")], "http._count"),
        ([("_count", "1"), ("_count", "2")], "http._count"),
    ],
)
def test_bad_search_parameters_are_a_400(params: list[tuple[str, str]], expression: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_audit_search(params, strict=False)
    assert caught.value.expression == expression


def test_unknown_parameters_under_strict_handling_are_a_400() -> None:
    with pytest.raises(BadRequest) as caught:
        parse_audit_search([("agent", "x")], strict=True)
    assert caught.value.expression == "http.agent"
    assert "AuditEvent supports entity, date, _count" in caught.value.diagnostics


# --- the CapabilityStatement ----------------------------------------------------------------


def _statement(**changes: object) -> dict[str, object]:
    arguments: dict[str, object] = {
        "base_url": SERVER,
        "software_version": "1",
        "date": "2026-11-27",
        "formats": ["json"],
        "interactions": ["read"],
        "search_params": [("_id", "token", "")],
        **changes,
    }
    return capability_statement(**arguments)  # type: ignore[arg-type]


def test_the_capability_statement_lists_audit_event() -> None:
    statement = _statement(
        other_resources=[
            ("AuditEvent", ["read", "search-type"], [("entity", "reference", "exact")])
        ]
    )
    rest = statement["rest"][0]  # type: ignore[index]
    binary, audit = rest["resource"]
    assert binary["type"] == "Binary"
    assert audit == {
        "type": "AuditEvent",
        "profile": "http://hl7.org/fhir/StructureDefinition/AuditEvent",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "versioning": "no-version",
        "searchParam": [
            {
                "name": "entity",
                "definition": "http://hl7.org/fhir/SearchParameter/AuditEvent-entity",
                "type": "reference",
                "documentation": "exact",
            }
        ],
    }
    ElementTree.fromstring(resource_to_xml(statement))  # and it has an XML form


@pytest.mark.parametrize(
    "others",
    [
        [("Binary", ["read"], [])],
        [("AuditEvent", ["read"], []), ("AuditEvent", ["read"], [])],
        [("AuditEvent", ["remove"], [])],
        [("AuditEvent", ["read"], [("date", "when", "")])],
    ],
)
def test_bad_other_resources_are_refused(others: object) -> None:
    with pytest.raises(ValueError, match=r"."):
        _statement(other_resources=others)
