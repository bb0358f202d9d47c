"""libmagic's verdicts as fhirbin uses them: essences, charsets, confirmed executables."""

from __future__ import annotations

import pytest

from fhirbin.security.sniff import SNIFF_BYTES, UNIDENTIFIED, Sniffed, sniff
from tests.security import samples


@pytest.mark.parametrize(
    ("content", "media_type"),
    [
        (samples.PDF, "application/pdf"),
        (samples.PNG, "image/png"),
        (samples.JPEG, "image/jpeg"),
        (samples.GIF, "image/gif"),
        (samples.CSV, "text/csv"),
        (samples.FHIR_JSON, "application/json"),
        (samples.CDA, "text/xml"),
        (samples.HTML, "text/html"),
        (samples.SVG, "image/svg+xml"),
        (samples.DOCX, "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        (samples.ZIP, "application/zip"),
        (samples.PE, "application/vnd.microsoft.portable-executable"),
        (samples.ELF, "application/x-executable"),
        (samples.MACH_O, "application/x-mach-binary"),
        (samples.SHELL, "text/x-shellscript"),
        (samples.NODE_SCRIPT, "application/javascript"),
        (samples.BATCH, "text/x-msdos-batch"),
        (b"", "application/x-empty"),
    ],
)
def test_sniff_names_the_format(content: bytes, media_type: str) -> None:
    assert sniff(content).media_type == media_type


def test_text_comes_with_its_charset_and_binary_with_binary() -> None:
    assert sniff(samples.TEXT) == Sniffed("text/plain", "us-ascii")
    assert sniff("Zürich, Genève".encode()).charset == "utf-8"
    assert sniff(samples.PNG).charset == "binary"


def test_a_dos_com_guess_without_an_mz_header_is_not_an_executable() -> None:
    # libmagic calls ~1 % of random data a DOS .com program; that guess must not refuse uploads.
    found = sniff(samples.COM_LOOKALIKE)
    assert found.media_type == UNIDENTIFIED
    assert not found.identified


def test_only_the_first_64_kib_are_looked_at() -> None:
    # An ELF header past the sniffing window changes nothing.
    content = samples.TEXT * (SNIFF_BYTES // len(samples.TEXT) + 1)
    assert sniff(content[:SNIFF_BYTES] + samples.ELF).media_type == "text/plain"


def test_utf8_cut_at_the_window_edge_is_still_text() -> None:
    content = ("é" * SNIFF_BYTES).encode()  # the window ends inside a two-byte character
    found = sniff(content)
    assert found.media_type == "text/plain"
    assert found.charset == "utf-8"


def test_empty_and_unknown_content_are_not_identified() -> None:
    assert not sniff(b"").identified
    assert sniff(bytes(range(256)) * 4 + b"\x00" * 10).media_type != "text/plain"
    assert str(sniff(samples.PNG)) == "image/png"
