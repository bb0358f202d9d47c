"""The compatibility table: strict where a wrong label is dangerous, tolerant where libmagic is
coarse (docs/security.md)."""

from __future__ import annotations

import pytest

from fhirbin.security.mediatypes import accepts, canonical, is_markup, is_textual
from fhirbin.security.sniff import Sniffed, sniff
from tests.security import samples

ASCII = "us-ascii"


@pytest.mark.parametrize(
    ("declared", "content"),
    [
        ("application/pdf", samples.PDF),
        ("application/pdf; name=report.pdf", samples.PDF),
        ("image/png", samples.PNG),
        ("image/jpg", samples.JPEG),  # an alias of image/jpeg
        ("text/csv", samples.CSV),
        ("text/plain; charset=utf-8", samples.CSV),
        ("application/vnd.ms-excel", samples.CSV),  # what Windows browsers call a .csv
        ("application/json", samples.TEXT),
        ("application/fhir+json", samples.FHIR_JSON),
        ("application/json", samples.FHIR_JSON),
        ("text/plain", samples.FHIR_JSON),
        ("application/fhir+xml", samples.FHIR_XML),
        ("application/xml", samples.CDA),
        ("text/xml", samples.CDA),
        ("application/hl7-v3+xml", samples.CDA),
        ("x-application/hl7-v2+er7", samples.HL7V2),
        ("text/html", samples.HTML),
        ("application/xhtml+xml", samples.HTML),
        ("image/svg+xml", samples.SVG),
        ("application/xml", samples.SVG),
        ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", samples.DOCX),
        ("application/zip", samples.DOCX),
        ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", samples.ZIP),
        ("application/msword", samples.DOCX),
        ("audio/wav", samples.WAV),
        ("audio/x-wav", samples.WAV),
        ("video/x-msvideo", samples.WAV),  # RIFF containers: audio and video are not told apart
        (
            "application/pdf",
            b"",
        ),  # empty content contradicts nothing: docs/decisions.md#empty-binary
        ("image/png", bytes([0xFB, 0xFF, 0xFE]) * 50),  # "ISO-8859 text" is a guess
        ("application/dicom", bytes(range(256)) * 4),  # libmagic's weak "TGA" guess
        ("application/octet-stream", samples.PE),  # generic: never a mismatch (deny is separate)
        ("application/octet-stream", samples.HTML),
    ],
)
def test_compatible_pairs_are_accepted(declared: str, content: bytes) -> None:
    assert accepts(declared, sniff(content)), (declared, sniff(content))


@pytest.mark.parametrize(
    ("declared", "content"),
    [
        ("application/pdf", samples.PE),  # an executable named report.pdf
        ("application/pdf", samples.ELF),
        ("image/png", samples.PDF),  # a PDF declared as PNG
        ("application/pdf", samples.PNG),
        ("image/jpeg", samples.PNG),
        ("image/png", samples.HTML),  # HTML hiding behind an image type
        ("image/png", samples.SVG),
        ("text/plain", samples.HTML),  # active markup never hides behind a passive type
        ("text/plain", samples.SVG),
        ("text/csv", samples.CDA),
        ("application/fhir+json", samples.CDA),
        ("image/png", samples.TEXT),  # real (ASCII) text is not an image
        ("application/pdf", samples.CSV),
        ("application/zip", samples.PDF),
        ("application/pdf", samples.DOCX),
        ("image/png", samples.WAV),
    ],
)
def test_contradictions_are_refused(declared: str, content: bytes) -> None:
    assert not accepts(declared, sniff(content)), (declared, sniff(content))


def test_aliases_resolve_to_one_name() -> None:
    assert canonical("Image/JPG; q=1") == "image/jpeg"
    assert canonical("application/x-dosexec") == canonical(
        "application/vnd.microsoft.portable-executable"
    )
    assert canonical("text/xml") == "application/xml"
    assert canonical("application/x-custom") == "application/x-custom"


def test_textual_and_markup_families() -> None:
    assert is_textual("text/anything")
    assert is_textual("application/geo+json")
    assert is_textual("message/rfc822")
    assert not is_textual("application/pdf")
    assert is_markup("application/fhir+xml")
    assert is_markup("text/html")
    assert not is_markup("text/plain")


def test_sniffed_text_in_an_8bit_charset_contradicts_nothing() -> None:
    assert accepts("image/png", Sniffed("text/plain", "iso-8859-1"))
    assert accepts("image/png", Sniffed("text/plain", "unknown-8bit"))
    assert not accepts("image/png", Sniffed("text/plain", ASCII))


def test_a_format_outside_the_table_contradicts_nothing() -> None:
    # libmagic reports zlib streams, ADTS audio, Amiga fonts … from two or three bytes.
    assert accepts("application/dicom", Sniffed("application/zlib"))
    assert accepts("application/pdf", Sniffed("audio/x-hx-aac-adts"))


def test_exactly_compared_formats_need_the_same_type() -> None:
    assert accepts("application/dicom", Sniffed("application/dicom"))
    assert not accepts("application/pdf", Sniffed("application/dicom"))
    assert not accepts("application/gzip", Sniffed("application/x-7z-compressed"))
    assert accepts("application/tar+gzip", Sniffed("application/gzip"))
    assert accepts("application/x-gzip", Sniffed("application/gzip"))
