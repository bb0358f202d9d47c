"""fhirbin.fhir.binary_parse: is a FHIR-JSON body a Binary resource, and is it a valid one?"""

from __future__ import annotations

import json
from typing import Any

import pytest

from fhirbin.errors import BadRequest
from fhirbin.fhir.binary import ParsedBinary, parse_binary_resource


def _body(**elements: Any) -> bytes:
    return json.dumps({"resourceType": "Binary", "contentType": "text/plain", **elements}).encode()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'"a string"',
        b"null",
        b"{}",
        b'{"resourceType": "Patient", "id": "p"}',
        b'{"resourceType": "binary", "contentType": "text/plain"}',  # case sensitive
        b'{"resourceType": 5}',
        b'{"contentType": "text/plain", "data": "aGk="}',  # no resourceType
        b"\xff\xfe{ not utf-8",
        b"[" * 100_000,  # nesting deep enough to exhaust the parser is just content
    ],
)
def test_bodies_that_are_not_a_binary_resource_are_native_content(body: bytes) -> None:
    assert parse_binary_resource(body) is None


def test_binary_resource_is_parsed() -> None:
    body = _body(id="x1", data="aGVsbG8=", securityContext={"reference": "DocumentReference/7"})
    assert parse_binary_resource(body) == ParsedBinary(
        content_type="text/plain",
        security_context="DocumentReference/7",
        data=b"hello",
        id="x1",
    )


def test_binary_without_data_is_empty_content() -> None:
    assert parse_binary_resource(_body()) == ParsedBinary("text/plain", None, b"", None)


@pytest.mark.parametrize(
    ("data", "decoded"),
    [
        ("+/8=", b"\xfb\xff"),  # '+' and '/' are base64 (the R4 regex forgets '/')
        ("aGVs\nbG8=", b"hello"),  # whitespace is allowed, as in XML
        (" aGVs bG8= ", b"hello"),
        ("AAAA", b"\x00\x00\x00"),
    ],
)
def test_data_is_decoded_with_a_real_base64_decoder(data: str, decoded: bytes) -> None:
    parsed = parse_binary_resource(_body(data=data))
    assert parsed is not None
    assert parsed.data == decoded


def test_client_id_meta_and_language_are_accepted_and_ignored() -> None:
    body = _body(id="mine", meta={"versionId": "9", "lastUpdated": "2020-01-01T00:00:00Z"})
    parsed = parse_binary_resource(json.dumps({**json.loads(body), "language": "en"}).encode())
    assert parsed == ParsedBinary("text/plain", None, b"", "mine")


def test_content_type_is_kept_verbatim_including_another_fhir_version() -> None:
    # Inside a Binary, contentType describes the data (say, an STU3 resource), not the request.
    body = _body(contentType="application/fhir+json; fhirVersion=3.0")
    parsed = parse_binary_resource(body)
    assert parsed is not None
    assert parsed.content_type == "application/fhir+json; fhirVersion=3.0"


def test_absolute_security_context_reference_is_accepted() -> None:
    ref = "https://fhir.example.org/fhir/Patient/42"
    parsed = parse_binary_resource(_body(securityContext={"reference": ref, "display": "Pat"}))
    assert parsed is not None
    assert parsed.security_context == ref


def _without_content_type() -> bytes:
    return b'{"resourceType": "Binary", "data": "aGk="}'


@pytest.mark.parametrize(
    ("body", "expression"),
    [
        (_without_content_type(), "Binary.contentType"),
        (_body(contentType=5), "Binary.contentType"),
        (_body(contentType=""), "Binary.contentType"),
        (_body(contentType="nonsense"), "Binary.contentType"),
        (_body(data="@@@@"), "Binary.data"),
        (_body(data="aGVsbG8"), "Binary.data"),  # missing padding
        (_body(data="-_8="), "Binary.data"),  # base64url is not base64
        (_body(data="aGVsbG8=é"), "Binary.data"),
        (_body(data=5), "Binary.data"),
        (_body(data=""), "Binary.data"),
        (_body(data=None), "Binary.data"),
        (_body(text={"status": "generated", "div": "<div/>"}), "Binary.text"),
        (_body(contained=[]), "Binary.contained"),
        (_body(extension=[]), "Binary.extension"),
        (_body(modifierExtension=[]), "Binary.modifierExtension"),
        (_body(implicitRules="http://example.org/rules"), "Binary.implicitRules"),
        (_body(foo=1), "Binary.foo"),
        (_body(_data={"extension": []}), "Binary.data"),
        (_body(_contentType={"extension": []}), "Binary.contentType"),
        (_body(securityContext="Patient/1"), "Binary.securityContext"),
        (_body(securityContext=None), "Binary.securityContext"),
        (
            _body(securityContext={"identifier": {"value": "1"}}),
            "Binary.securityContext.identifier",
        ),
        (_body(securityContext={}), "Binary.securityContext.reference"),
        (_body(securityContext={"reference": "not a ref"}), "Binary.securityContext.reference"),
        (_body(securityContext={"reference": 7}), "Binary.securityContext.reference"),
        (
            _body(securityContext={"reference": "Patient/1", "extension": []}),
            "Binary.securityContext.extension",
        ),
        (_body(id=5), "Binary.id"),
        (_body(id=""), "Binary.id"),
        (_body(meta="x"), "Binary.meta"),
        (_body(language=["en"]), "Binary.language"),
        (b'{"resourceType": "Binary", "contentType": "a/b", "contentType": "c/d"}', "Binary"),
    ],
)
def test_invalid_binary_resource_is_400_naming_the_element(body: bytes, expression: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_binary_resource(body)
    assert info.value.status == 400
    assert info.value.expression == expression


def test_domain_resource_elements_are_refused_because_binary_is_a_resource() -> None:
    with pytest.raises(BadRequest, match="not a DomainResource"):
        parse_binary_resource(_body(text={"status": "generated", "div": "<div/>"}))


def test_identifier_security_context_says_only_reference_is_supported() -> None:
    with pytest.raises(BadRequest, match=r"only securityContext\.reference"):
        parse_binary_resource(_body(securityContext={"identifier": {"value": "1"}}))
