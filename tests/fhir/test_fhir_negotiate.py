"""fhirbin.fhir.negotiate: content negotiation and Content-Type validation
(docs/decisions.md#read-representation, #other-accept-types-get-the-content, #fhir-version,
#unsupported-format)."""

from __future__ import annotations

import pytest

from fhirbin.errors import BadRequest, NotAcceptable, UnsupportedMediaType
from fhirbin.fhir import negotiate
from fhirbin.fhir.negotiate import (
    Representation,
    check_content_type,
    fhir_format,
    is_fhir_json_type,
    is_fhir_xml_type,
    media_type_essence,
    read_representation,
)

NATIVE, JSON, XML = Representation.NATIVE, Representation.FHIR_JSON, Representation.FHIR_XML
CHROME = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, NATIVE),
        ("", NATIVE),
        ("*/*", NATIVE),
        ("application/json", NATIVE),
        ("application/xml", NATIVE),
        ("text/xml", NATIVE),
        (CHROME, NATIVE),
        (FIREFOX, NATIVE),
        ("image/png", NATIVE),  # docs/decisions.md#other-accept-types-get-the-content
        ("garbage", NATIVE),
        ("application/fhir+json", JSON),
        ("application/json+fhir", JSON),
        ("APPLICATION/FHIR+JSON", JSON),
        ("application/fhir+json; charset=utf-8", JSON),
        ("application/fhir+json; fhirVersion=4.0", JSON),
        ('application/fhir+json; fhirVersion="4.0"', JSON),
        ("application/fhir+xml", XML),
        ("application/xml+fhir", XML),
        ("application/fhir+json, */*", NATIVE),  # ties go to native
        ("application/fhir+json, application/pdf;q=0.9", JSON),
        ("application/pdf, application/fhir+json;q=0.1", NATIVE),
        ("application/fhir+json;q=0", NATIVE),  # q=0 never wins
        ("application/fhir+json;q=0, */*;q=0", NATIVE),
        ("application/fhir+json;q=0.5, application/fhir+xml;q=0.8", XML),
        ("application/fhir+xml, application/fhir+json", JSON),  # FHIR tie: JSON
        ("application/fhir+json;q=banana", NATIVE),  # unparsable q counts as 0
        ("application/fhir+json;q=2", NATIVE),
        ("application/fhir+json;q=.5, */*;q=.2", JSON),
        ("application/fhir+json; q=1.000", JSON),
        ('application/fhir+json;x="a,b;q=0", */*;q=0.5', JSON),  # quoted , and ; are data
        ("*; q=.2, application/fhir+json", JSON),
        ("application/fhir+json;fhirVersion=3.0, application/fhir+json;fhirVersion=4.0", JSON),
        ("application/pdf, application/fhir+json;fhirVersion=3.0;q=0.5", NATIVE),
        ("application/fhir+json;fhirVersion=3.0, application/pdf;q=0.5", NATIVE),
        ("application/fhir+json;fhirVersion=3.0, application/fhir+json;q=0.1", JSON),
    ],
)
def test_accept_decides_between_native_bytes_and_fhir_resource(
    accept: str | None, expected: Representation
) -> None:
    assert read_representation(None, accept) is expected


def test_generic_json_accept_gets_native_bytes() -> None:
    assert read_representation(None, "application/json") is NATIVE


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("json", JSON),
        ("JSON", JSON),
        ("application/json", JSON),
        ("application/fhir+json", JSON),
        ("application/fhir json", JSON),  # an unescaped + decoded to a space
        ("application/json+fhir", JSON),
        ("application/fhir+json; fhirVersion=4.0", JSON),
        ("xml", XML),
        ("text/xml", XML),
        ("application/xml", XML),
        ("application/fhir+xml", XML),
        ("application/xml+fhir", XML),
    ],
)
def test_format_always_means_fhir_and_beats_accept(fmt: str, expected: Representation) -> None:
    assert read_representation(fmt, "application/pdf") is expected
    assert read_representation(fmt, None) is expected
    assert fhir_format(fmt, "application/fhir+xml" if expected is JSON else "*/*") is expected


def test_format_beats_an_accept_with_another_fhir_version() -> None:
    assert read_representation("json", "application/fhir+json;fhirVersion=3.0") is JSON


@pytest.mark.parametrize("fmt", ["", "  "])
def test_blank_format_is_as_if_absent(fmt: str) -> None:
    assert read_representation(fmt, None) is NATIVE
    assert read_representation(fmt, "application/fhir+xml") is XML
    assert fhir_format(fmt, None) is JSON


@pytest.mark.parametrize(
    "fmt",
    [
        "html",
        "text/html",
        "ttl",
        "text/turtle",
        "application/fhir+turtle",
        "bogus",
        "application/pdf",
        "application/fhir+json; fhirVersion=3.0",
    ],
)
def test_unsupported_format_is_406(fmt: str) -> None:
    for negotiate_fn in (read_representation, fhir_format):
        with pytest.raises(NotAcceptable) as info:
            negotiate_fn(fmt, "*/*")
        assert info.value.status == 406
        assert info.value.expression == "http._format"


@pytest.mark.parametrize(
    "accept",
    [
        "application/fhir+json; fhirVersion=3.0",
        'application/fhir+xml; fhirversion="5.0"',
        "application/fhir+json;fhirVersion=3.0, application/fhir+xml;fhirVersion=3.0",
        "application/fhir+json;fhirVersion=3.0, */*;q=0",
    ],
)
def test_accept_of_nothing_but_another_fhir_version_is_406(accept: str) -> None:
    for negotiate_fn in (read_representation, fhir_format):
        with pytest.raises(NotAcceptable) as info:
            negotiate_fn(None, accept)
        assert info.value.expression == "http.Accept"


@pytest.mark.parametrize(
    "accept",
    [
        "application/fhir+json;fhirVersion=3.0;q=0.5, */*",
        "application/fhir+json;fhirVersion=3.0, */*;q=0.1",
    ],
)
def test_other_fhir_version_is_ignored_while_something_else_is_acceptable(accept: str) -> None:
    assert read_representation(None, accept) is NATIVE
    assert fhir_format(None, accept) is JSON


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, JSON),
        ("", JSON),
        ("*/*", JSON),
        ("text/html", JSON),
        (CHROME, JSON),
        (FIREFOX, JSON),
        ("application/fhir+json", JSON),
        ("application/json", JSON),
        ("application/xml", XML),
        ("text/xml", XML),
        ("application/fhir+xml", XML),
        ("application/xml+fhir", XML),
        ("application/xml, application/json", JSON),  # tie: JSON
        ("application/xml, */*", JSON),
        ("application/xml;q=0.9, application/fhir+json;q=0.8", XML),
        ("application/json;q=0.5, text/xml;q=0.6", XML),
        ("application/fhir+xml;q=0", JSON),
        ("application/fhir+json;fhirVersion=3.0, */*", JSON),
    ],
)
def test_always_fhir_responses_are_json_unless_xml_is_preferred(
    accept: str | None, expected: Representation
) -> None:
    assert fhir_format(None, accept) is expected


def test_accept_parsing_is_cached_per_header_string() -> None:
    header = "application/fhir+json;q=0.7, application/pdf;q=0.3, x/cache-probe"
    read_representation(None, header)
    before = negotiate._parse_accept.cache_info().hits
    read_representation(None, header)
    fhir_format(None, header)
    assert negotiate._parse_accept.cache_info().hits > before


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("application/pdf", "application/pdf"),
        ("text/plain; charset=UTF-8", "text/plain; charset=UTF-8"),
        ("TEXT/Plain;Charset=UTF-8", "TEXT/Plain;Charset=UTF-8"),  # verbatim, not normalised
        ("  image/png  ", "image/png"),
        ('multipart/form-data; boundary="a b;c"', 'multipart/form-data; boundary="a b;c"'),
        ("application/vnd.api+json", "application/vnd.api+json"),
        ("text/plain;", "text/plain;"),  # RFC 9110 allows an empty parameter
        ("application/fhir+json", "application/fhir+json"),
        ("application/fhir+json; fhirVersion=4.0", "application/fhir+json; fhirVersion=4.0"),
        ("application/json; fhirVersion=3.0", "application/json; fhirVersion=3.0"),
    ],
)
def test_content_type_is_stored_verbatim(value: str, stored: str) -> None:
    assert check_content_type(value) == stored


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_content_type_is_400_because_content_type_is_required(value: str | None) -> None:
    with pytest.raises(BadRequest, match=r"Content-Type is required.*1\.\.1") as info:
        check_content_type(value)
    assert info.value.expression == "http.Content-Type"


@pytest.mark.parametrize(
    "value",
    [
        "pdf",
        "text/",
        "/plain",
        "text/plain;  charset=x",  # a FHIR code has single spaces only
        "text/plain; charset",
        "text/pl ain",
        "text/plain; charset=ü",
        "text/plain\r\nX-Evil: 1",
        'text/plain; a="unterminated',
        "text/plain, text/html",
        "*/*",
        "image/*",
    ],
)
def test_malformed_content_type_is_400(value: str) -> None:
    with pytest.raises(BadRequest) as info:
        check_content_type(value, expression="Binary.contentType")
    assert info.value.status == 400
    assert info.value.expression == "Binary.contentType"


@pytest.mark.parametrize(
    "value",
    ["application/fhir+json; fhirVersion=3.0", 'application/fhir+xml;fhirversion="5.0"'],
)
def test_fhir_content_type_of_another_fhir_version_is_415(value: str) -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        check_content_type(value)
    assert info.value.status == 415
    # ...but as a Binary.contentType it only describes the data, and is stored as it is.
    assert check_content_type(value, describes_request=False) == value


@pytest.mark.parametrize(
    ("value", "essence", "fhir_json", "fhir_xml"),
    [
        ("Text/Plain; charset=x", "text/plain", False, False),
        ("application/fhir+json", "application/fhir+json", True, False),
        ("Application/JSON+FHIR;charset=utf-8", "application/json+fhir", True, False),
        ("application/json", "application/json", False, False),
        ("application/fhir+xml; fhirVersion=4.0", "application/fhir+xml", False, True),
        ("application/xml+fhir", "application/xml+fhir", False, True),
        ("text/xml", "text/xml", False, False),
    ],
)
def test_media_type_essence_and_fhir_type_checks(
    value: str, essence: str, fhir_json: bool, fhir_xml: bool
) -> None:
    assert media_type_essence(value) == essence
    assert is_fhir_json_type(value) is fhir_json
    assert is_fhir_xml_type(value) is fhir_xml
