"""fhirbin.fhir.xml_write: FHIR JSON shapes to FHIR XML, and the Binary streamed in XML."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from xml.etree.ElementTree import Element

import anyio
import pytest
from defusedxml.ElementTree import (  # type: ignore[import-untyped,unused-ignore]
    fromstring as safe_fromstring,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from fhirbin.fhir.binary import ContentSizeMismatchError, binary_summary_json
from fhirbin.fhir.capability import capability_statement
from fhirbin.fhir.outcome import operation_outcome
from fhirbin.fhir.xml_write import (
    FHIR_NS,
    XML_DECLARATION,
    binary_xml_length,
    binary_xml_parts,
    binary_xml_stream,
    escape_attribute,
    resource_to_xml,
)

NS = "{" + FHIR_NS + "}"
WHEN = datetime(2026, 11, 26, 11, 33, 47, 123456, tzinfo=UTC)


@dataclass(frozen=True)
class Meta:
    id: str = "abc"
    version: int = 3
    last_updated: datetime = WHEN
    content_type: str = "text/plain"
    security_context: str | None = None
    size: int = 5


def parse(xml: bytes) -> Element:
    root: Element = safe_fromstring(xml)
    return root


def local(tag: str) -> str:
    assert tag.startswith(NS), tag
    return tag[len(NS) :]


def shape(element: Element) -> Any:
    """(name, value) for a primitive, (name, [children]) for a complex element, with the
    element's attributes other than value when it has any."""
    name = local(element.tag)
    attrs = {k: v for k, v in element.attrib.items() if k != "value"}
    if "value" in element.attrib:
        assert len(element) == 0
        return (name, element.attrib["value"])
    children = [shape(child) for child in element]
    return (name, children, attrs) if attrs else (name, children)


def names(element: Element) -> list[str]:
    return [local(child.tag) for child in element]


async def _chunks(parts: Sequence[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([piece async for piece in stream])


# --- generic JSON -> XML ---------------------------------------------------------------------


def test_operation_outcome_follows_the_definition_order_not_the_dict_order() -> None:
    outcome = operation_outcome("invalid", "Binary.data is not base64", expression="Binary.data")
    scrambled = {
        "issue": [
            {
                "expression": ["Binary.data"],
                "diagnostics": "Binary.data is not base64",
                "code": "invalid",
                "severity": "error",
            }
        ],
        "resourceType": "OperationOutcome",
    }
    xml = resource_to_xml(outcome)
    assert resource_to_xml(scrambled) == xml
    assert xml.startswith(XML_DECLARATION.encode() + b"<OperationOutcome ")
    root = parse(xml)
    assert root.tag == NS + "OperationOutcome"
    assert shape(root) == (
        "OperationOutcome",
        [
            (
                "issue",
                [
                    ("severity", "error"),
                    ("code", "invalid"),
                    ("diagnostics", "Binary.data is not base64"),
                    ("expression", "Binary.data"),
                ],
            )
        ],
    )


def test_operation_outcome_details_coding_and_location_order() -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "id": "oo1",
        "issue": [
            {
                "location": ["/f:Binary/f:data"],
                "expression": ["Binary.data", "Binary.contentType"],
                "details": {
                    "text": "bad",
                    "coding": [{"display": "D", "code": "c", "system": "http://s"}],
                },
                "code": "invalid",
                "severity": "error",
            }
        ],
    }
    root = parse(resource_to_xml(outcome))
    assert names(root) == ["id", "issue"]
    issue = root[1]
    assert names(issue) == [
        "severity",
        "code",
        "details",
        "location",
        "expression",
        "expression",
    ]
    assert shape(issue[2]) == (
        "details",
        [("coding", [("system", "http://s"), ("code", "c"), ("display", "D")]), ("text", "bad")],
    )


def test_capability_statement_round_trip_structure_and_order() -> None:
    statement = capability_statement(
        base_url="https://x.example/fhir",
        software_version="0.1.0",
        date="2026-11-26T11:33:47Z",
        formats=["json", "xml"],
        interactions=["read", "vread", "search-type"],
        search_params=[("_id", "token", "ids"), ("_lastUpdated", "date", "")],
        update_create=True,
        conditional_read="full-support",
    )
    root = parse(resource_to_xml(statement, pretty=True))
    assert root.tag == NS + "CapabilityStatement"
    assert names(root) == [
        "status",
        "date",
        "publisher",
        "kind",
        "software",
        "implementation",
        "fhirVersion",
        "format",
        "format",
        "rest",
    ]
    rest = root.find(NS + "rest")
    assert rest is not None
    assert names(rest) == ["mode", "security", "resource"]
    security = rest.find(NS + "security")
    assert security is not None
    assert names(security) == ["service", "description"]
    resource = rest.find(NS + "resource")
    assert resource is not None
    assert names(resource) == [
        "type",
        "profile",
        "interaction",
        "interaction",
        "interaction",
        "versioning",
        "readHistory",
        "updateCreate",
        "conditionalRead",
        "searchParam",
        "searchParam",
    ]
    assert shape(resource.findall(NS + "searchParam")[0]) == (
        "searchParam",
        [
            ("name", "_id"),
            ("definition", "http://hl7.org/fhir/SearchParameter/Resource-id"),
            ("type", "token"),
            ("documentation", "ids"),
        ],
    )
    assert resource.find(NS + "updateCreate") is not None
    assert resource.findall(NS + "updateCreate")[0].get("value") == "true"
    assert resource.findall(NS + "readHistory")[0].get("value") == "false"
    assert [e.get("value") for e in root.findall(NS + "format")] == ["json", "xml"]


def test_capability_statement_full_top_level_order() -> None:
    statement = {
        "rest": [{"mode": "server", "documentation": "d"}],
        "format": ["xml"],
        "fhirVersion": "4.0.1",
        "kind": "instance",
        "date": "2026",
        "status": "active",
        "url": "http://x/cs",
        "version": "1",
        "name": "N",
        "title": "T",
        "experimental": False,
        "publisher": "p",
        "contact": [{"telecom": [{"value": "v", "system": "url"}], "name": "n"}],
        "description": "desc",
        "jurisdiction": [{"text": "world"}],
        "purpose": "pur",
        "copyright": "c",
        "instantiates": ["http://i"],
        "imports": ["http://m"],
        "software": {"releaseDate": "2026-01-01", "version": "1", "name": "s"},
        "implementation": {"url": "http://x", "description": "i"},
        "patchFormat": ["application/json-patch+json"],
        "implementationGuide": ["http://ig"],
        "document": [{"profile": "http://p", "mode": "producer"}],
        "resourceType": "CapabilityStatement",
        "language": "en",
    }
    root = parse(resource_to_xml(statement))
    assert names(root) == [
        "language",
        "url",
        "version",
        "name",
        "title",
        "status",
        "experimental",
        "date",
        "publisher",
        "contact",
        "description",
        "jurisdiction",
        "purpose",
        "copyright",
        "kind",
        "instantiates",
        "imports",
        "software",
        "implementation",
        "fhirVersion",
        "format",
        "patchFormat",
        "implementationGuide",
        "rest",
        "document",
    ]
    assert names(root[18]) == ["description", "url"]
    assert names(root[17]) == ["name", "version", "releaseDate"]
    assert shape(root[9]) == (
        "contact",
        [("name", "n"), ("telecom", [("system", "url"), ("value", "v")])],
    )


def test_bundle_round_trip_nests_a_binary_and_orders_entries() -> None:
    bundle = {
        "entry": [
            {
                "search": {"score": 1, "mode": "match"},
                "resource": {
                    "data": "aGk=",
                    "contentType": "text/plain",
                    "meta": {"lastUpdated": "2026-11-26T11:33:47Z", "versionId": "2"},
                    "id": "a",
                    "resourceType": "Binary",
                },
                "fullUrl": "http://x/fhir/Binary/a",
            },
            {
                "response": {"lastModified": "2026", "etag": 'W/"1"', "status": "201 Created"},
                "request": {"url": "Binary", "method": "POST"},
                "fullUrl": "urn:uuid:1",
            },
        ],
        "link": [{"url": "http://x/fhir/Binary", "relation": "self"}],
        "total": 1,
        "timestamp": "2026-11-26T11:33:47Z",
        "type": "searchset",
        "meta": {"lastUpdated": "2026-11-26T11:33:47Z"},
        "id": "b1",
        "identifier": {"value": "v", "system": "urn:s"},
        "resourceType": "Bundle",
    }
    xml = resource_to_xml(bundle)
    root = parse(xml)
    assert names(root) == [
        "id",
        "meta",
        "identifier",
        "type",
        "timestamp",
        "total",
        "link",
        "entry",
        "entry",
    ]
    assert shape(root[6]) == ("link", [("relation", "self"), ("url", "http://x/fhir/Binary")])
    first, second = root.findall(NS + "entry")
    assert names(first) == ["fullUrl", "resource", "search"]
    assert shape(first[2]) == ("search", [("mode", "match"), ("score", "1")])
    binary = first[1][0]
    assert binary.tag == NS + "Binary"
    assert shape(binary) == (
        "Binary",
        [
            ("id", "a"),
            ("meta", [("versionId", "2"), ("lastUpdated", "2026-11-26T11:33:47Z")]),
            ("contentType", "text/plain"),
            ("data", "aGk="),
        ],
    )
    assert names(second) == ["fullUrl", "request", "response"]
    assert shape(second[1]) == ("request", [("method", "POST"), ("url", "Binary")])
    assert names(second[2]) == ["status", "etag", "lastModified"]
    # The nested resource re-declares the (same) default namespace and has no declaration.
    assert xml.count(b"<?xml") == 1
    assert b'<resource><Binary xmlns="http://hl7.org/fhir"><id value="a"/>' in xml


def test_bundle_entry_response_outcome_is_a_wrapped_resource() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": [
            {
                "response": {
                    "outcome": operation_outcome("not-found", "gone"),
                    "status": "404 Not Found",
                }
            }
        ],
    }
    root = parse(resource_to_xml(bundle))
    response = root[1][0]
    assert names(response) == ["status", "outcome"]
    assert response[1][0].tag == NS + "OperationOutcome"


def test_binary_and_summary_binary() -> None:
    binary = {
        "resourceType": "Binary",
        "data": "aGk=",
        "securityContext": {"display": "d", "reference": "Patient/1"},
        "contentType": "application/pdf",
        "id": "x",
    }
    root = parse(resource_to_xml(binary))
    assert shape(root) == (
        "Binary",
        [
            ("id", "x"),
            ("contentType", "application/pdf"),
            ("securityContext", [("reference", "Patient/1"), ("display", "d")]),
            ("data", "aGk="),
        ],
    )
    summary = parse(resource_to_xml(binary_summary_json(Meta(security_context="Patient/1"))))
    meta = summary.find(NS + "meta")
    assert meta is not None
    assert names(meta) == ["versionId", "lastUpdated", "tag"]
    assert names(meta[2]) == ["system", "code"]
    assert summary.find(NS + "data") is None


def test_contained_resources_are_wrapped() -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "invalid"}],
        "contained": [{"resourceType": "Binary", "contentType": "text/plain"}],
    }
    root = parse(resource_to_xml(outcome))
    assert names(root) == ["contained", "issue"]
    assert root[0][0].tag == NS + "Binary"


def test_primitive_lexical_forms() -> None:
    binary = {"resourceType": "Binary", "contentType": "a/b"}
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 0,
        "entry": [
            {"fullUrl": "u1", "resource": binary, "search": {"score": 0.25}},
            {"fullUrl": "u2", "resource": binary, "search": {"score": Decimal("1.50")}},
        ],
    }
    root = parse(resource_to_xml(bundle))
    assert root.find(NS + "total") is not None
    assert root[1].get("value") == "0"
    scores = [e.get("value") for e in root.iter(NS + "score")]
    assert scores == ["0.25", "1.50"]
    coding = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "invalid",
                "details": {"coding": [{"code": "c", "userSelected": True}]},
            }
        ],
    }
    assert b'<userSelected value="true"/>' in resource_to_xml(coding)


def test_element_ids_are_attributes_but_the_resource_id_is_an_element() -> None:
    binary = {
        "resourceType": "Binary",
        "id": "r1",
        "meta": {"id": "m1", "versionId": "1"},
        "contentType": "text/plain",
    }
    xml = resource_to_xml(binary)
    assert b'<id value="r1"/><meta id="m1"><versionId value="1"/></meta>' in xml
    root = parse(xml)
    assert root.find(NS + "meta") is not None
    assert root[1].get("id") == "m1"


@pytest.mark.parametrize(
    "text",
    [
        'say "hi"',
        "a & b",
        "<script>alert(1)</script>",
        "line1\nline2\r\nline3\tend",
        "it's > 3",
        "ünïcødé ✓ 𝄞",
        "&amp; is already escaped",
        "  leading and trailing  ",
    ],
)
def test_attribute_escaping_round_trips(text: str) -> None:
    xml = resource_to_xml(operation_outcome("invalid", text))
    assert b"\n" not in xml.split(b"?>", 1)[1]  # newlines in values are character references
    issue = parse(xml)[0]
    assert issue[2].get("value") == text


@settings(deadline=None, database=None)
@given(st.text(min_size=1).filter(lambda s: s.strip() != ""))
def test_any_string_round_trips_or_loses_only_characters_xml_cannot_hold(text: str) -> None:
    issue = parse(resource_to_xml(operation_outcome("invalid", text)))[0]
    expected = re.sub("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]", "\ufffd", text)
    assert issue[2].get("value") == expected


def test_characters_xml_cannot_hold_become_replacement_characters() -> None:
    assert escape_attribute("a\x00b\x1bc\ufffe\ud800") == "a\ufffdb\ufffdc\ufffd\ufffd"
    issue = parse(resource_to_xml(operation_outcome("invalid", "nul\x00here")))[0]
    assert issue[2].get("value") == "nul\ufffdhere"


def test_pretty_indents_two_spaces_and_compact_has_no_layout() -> None:
    outcome = operation_outcome("invalid", "x", expression="Binary.data")
    pretty = resource_to_xml(outcome, pretty=True).decode()
    assert pretty.splitlines() == [
        XML_DECLARATION,
        '<OperationOutcome xmlns="http://hl7.org/fhir">',
        "  <issue>",
        '    <severity value="error"/>',
        '    <code value="invalid"/>',
        '    <diagnostics value="x"/>',
        '    <expression value="Binary.data"/>',
        "  </issue>",
        "</OperationOutcome>",
    ]
    compact = resource_to_xml(outcome)
    assert b"\n" not in compact
    assert b"> <" not in compact
    assert shape(parse(compact)) == shape(parse(pretty.encode()))


def test_declaration_can_be_left_out() -> None:
    outcome = operation_outcome("invalid", "x")
    assert resource_to_xml(outcome, declaration=False).startswith(b"<OperationOutcome xmlns=")
    assert resource_to_xml(outcome, pretty=True, declaration=False).startswith(b"<Operation")


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        ({"resourceType": "Patient"}, "Patient"),
        ({"contentType": "a/b"}, "None"),
        ({"resourceType": "Binary", "contentType": "a/b", "foo": "x"}, "Binary.foo"),
        ({"resourceType": "Binary", "text": {"status": "generated"}}, "Binary.text"),
        (
            {"resourceType": "OperationOutcome", "text": {"status": "generated", "div": "<div/>"}},
            "Narrative",
        ),
        ({"resourceType": "OperationOutcome", "extension": [{"url": "u"}]}, "extension is empty"),
        ({"resourceType": "OperationOutcome", "extension": [{"valueUri": "u"}]}, "url is required"),
        ({"resourceType": "Binary", "contentType": "a/b", "_contentType": {"id": "1"}}, "Binary"),
        ({"resourceType": "Binary", "meta": {"versionId": "1", "foo": "x"}}, "Binary.meta.foo"),
        ({"resourceType": "Binary", "meta": {}}, "empty"),
        ({"resourceType": "Binary", "meta": {"profile": []}}, "empty array"),
        ({"resourceType": "Binary", "contentType": ""}, "never empty"),
        ({"resourceType": "Binary", "contentType": "   "}, "never empty"),
        ({"resourceType": "Binary", "contentType": None}, "NoneType"),
        ({"resourceType": "Binary", "contentType": {"x": 1}}, "dict"),
        ({"resourceType": "Binary", "meta": "x"}, "JSON object"),
        ({"resourceType": "Bundle", "type": "x", "total": float("nan")}, "decimal"),
        (
            {"resourceType": "Bundle", "type": "x", "entry": [{"resource": "Binary/1"}]},
            "resource",
        ),
        (
            {"resourceType": "Bundle", "type": "x", "entry": [{"resource": {"resourceType": "X"}}]},
            "'X'",
        ),
        ({"resourceType": "CapabilityStatement", "useContext": [{"code": {}}]}, "UsageContext"),
        ({"resourceType": "CapabilityStatement", "messaging": [{"documentation": "x"}]}, "mess"),
        (
            {
                "resourceType": "Bundle",
                "type": "x",
                "link": [{"relation": "self", "resourceType": "x"}],
            },
            "resourceType",
        ),
    ],
)
def test_unknown_or_invalid_content_fails_loudly(resource: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        resource_to_xml(resource)


# --- the Binary, streamed ---------------------------------------------------------------------


def _binary_dict(meta: Meta, data: bytes) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Binary",
        "id": meta.id,
        "meta": {"versionId": str(meta.version), "lastUpdated": "2026-11-26T11:33:47.123456Z"},
        "contentType": meta.content_type,
    }
    if meta.security_context is not None:
        resource["securityContext"] = {"reference": meta.security_context}
    if data:
        resource["data"] = base64.b64encode(data).decode()
    return resource


@pytest.mark.parametrize("pretty", [False, True])
@pytest.mark.parametrize("declaration", [False, True])
@pytest.mark.parametrize("data", [b"", b"h", b"hello", bytes(range(256))])
def test_binary_parts_are_byte_for_byte_resource_to_xml(
    pretty: bool, declaration: bool, data: bytes
) -> None:
    meta = Meta(security_context="Patient/1", size=len(data))
    head, tail = binary_xml_parts(meta, pretty, declaration=declaration)
    whole = head + base64.b64encode(data) + tail
    expected = resource_to_xml(_binary_dict(meta, data), pretty, declaration=declaration)
    assert whole == expected
    assert binary_xml_length(meta, pretty, declaration=declaration) == len(expected)
    out = anyio.run(
        _collect, binary_xml_stream(meta, _chunks([data]), pretty, declaration=declaration)
    )
    assert out == expected


def test_binary_parts_shape() -> None:
    head, tail = binary_xml_parts(Meta(), pretty=True)
    assert head.endswith(b'\n  <data value="')
    assert tail == b'"/>\n</Binary>'
    head, tail = binary_xml_parts(Meta())
    assert head.endswith(b'<data value="')
    assert tail == b'"/></Binary>'
    assert head.startswith(XML_DECLARATION.encode() + b'<Binary xmlns="http://hl7.org/fhir">')
    assert binary_xml_parts(Meta(), declaration=False)[0].startswith(b"<Binary xmlns=")


@pytest.mark.parametrize("pretty", [False, True])
def test_empty_binary_has_no_data_element_and_an_empty_tail(pretty: bool) -> None:
    meta = Meta(size=0)
    head, tail = binary_xml_parts(meta, pretty)
    assert tail == b""
    root = parse(head)
    assert root.find(NS + "data") is None
    assert names(root) == ["id", "meta", "contentType"]
    assert binary_xml_length(meta, pretty) == len(head)
    assert anyio.run(_collect, binary_xml_stream(meta, _chunks([]), pretty)) == head


_AWKWARD = st.text(
    alphabet=st.one_of(
        st.sampled_from("\"&<>'\n\r\t ;=/"),
        st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
    ),
    max_size=40,
)


@settings(deadline=None, database=None, max_examples=150)
@given(
    size=st.integers(min_value=0, max_value=3000),
    parts=st.integers(min_value=1, max_value=7),
    content_type=st.sampled_from(
        ["text/plain", 'text/plain; charset="utf-8"', "application/x-a&b", 'a/b;x="<&>"']
    ),
    security=st.none() | _AWKWARD.map(lambda s: "Patient/" + s),
    id_=_AWKWARD.map(lambda s: "id" + s),
    version=st.integers(min_value=1, max_value=10**12),
    pretty=st.booleans(),
    declaration=st.booleans(),
)
def test_binary_xml_length_is_the_real_length(
    size: int,
    parts: int,
    content_type: str,
    security: str | None,
    id_: str,
    version: int,
    pretty: bool,
    declaration: bool,
) -> None:
    data = bytes((i * 7 + size) % 256 for i in range(size))
    meta = Meta(
        id=id_,
        version=version,
        content_type=content_type,
        security_context=security,
        size=size,
    )
    step = max(1, size // parts)
    chunks = [data[i : i + step] for i in range(0, size, step)]
    out = anyio.run(
        _collect, binary_xml_stream(meta, _chunks(chunks), pretty, declaration=declaration)
    )
    assert len(out) == binary_xml_length(meta, pretty, declaration=declaration)
    root = parse(out)
    assert root.find(NS + "id") is not None
    assert root[0].get("value") == id_
    assert root[2].get("value") == content_type
    reference = root.find(f"{NS}securityContext/{NS}reference")
    assert (reference.get("value") if reference is not None else None) == security
    data_element = root.find(NS + "data")
    if size:
        assert data_element is not None
        assert base64.b64decode(data_element.get("value", "")) == data
    else:
        assert data_element is None


@pytest.mark.parametrize("chunks", [[b"hell"], [b"hello!"], [b"he", b"llo", b"!"]])
def test_binary_stream_refuses_content_of_the_wrong_size(chunks: list[bytes]) -> None:
    with pytest.raises(ContentSizeMismatchError):
        anyio.run(_collect, binary_xml_stream(Meta(size=5), _chunks(chunks)))


def test_binary_meta_instant_is_utc() -> None:
    meta = replace(Meta(), last_updated=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    root = parse(binary_xml_parts(meta)[0] + b'aGk="/></Binary>')
    assert shape(root[1]) == ("meta", [("versionId", "3"), ("lastUpdated", "2026-01-02T03:04:05Z")])
