"""Safe serving headers (RFC 6266 Content-Disposition, CSP sandbox, CORP, Referrer-Policy)."""

from __future__ import annotations

import pytest

from fhirbin.security.serving import (
    PDF_CSP,
    SANDBOX_CSP,
    content_disposition,
    extension,
    filename,
    is_inline,
    native_headers,
)

ID = "0b9e8c3a-8d1f-4e2b-9c7a-1f2e3d4c5b6a"


@pytest.mark.parametrize(
    ("content_type", "disposition", "ext"),
    [
        ("application/pdf", "inline", "pdf"),
        ("image/png", "inline", "png"),
        ("image/jpeg", "inline", "jpg"),
        ("image/jpg", "inline", "jpg"),
        ("image/gif", "inline", "gif"),
        ("image/webp", "inline", "webp"),
        ("audio/mpeg", "inline", "mp3"),
        ("video/mp4", "inline", "mp4"),
        ("video/x-unknown", "inline", "bin"),
        ("text/plain; charset=ISO-8859-1", "inline", "txt"),
        ("Text/Plain", "inline", "txt"),
        ("text/html", "attachment", "html"),
        ("text/html; charset=utf-8", "attachment", "html"),
        ("application/xhtml+xml", "attachment", "xhtml"),
        ("image/svg+xml", "attachment", "svg"),
        ("application/xml", "attachment", "xml"),
        ("text/xml", "attachment", "xml"),
        ("application/fhir+xml", "attachment", "xml"),
        ("application/fhir+json", "attachment", "json"),
        ("application/json", "attachment", "json"),
        ("text/javascript", "attachment", "txt"),  # never .js: a double-click would run it
        ("application/javascript", "attachment", "txt"),
        ("application/x-msdownload", "attachment", "bin"),
        ("text/csv", "attachment", "csv"),
        ("application/octet-stream", "attachment", "bin"),
        ("application/x-something-new", "attachment", "bin"),
        ("application/epub+zip", "attachment", "epub"),
        ("application/vnd.example+zip", "attachment", "zip"),
    ],
)
def test_disposition_and_name_by_type(content_type: str, disposition: str, ext: str) -> None:
    name = f"binary-{ID}.{ext}"
    assert extension(content_type) == ext
    assert is_inline(content_type) == (disposition == "inline")
    assert content_disposition(ID, content_type) == (
        f"{disposition}; filename=\"{name}\"; filename*=UTF-8''{name}"
    )


def test_every_native_response_gets_the_sandbox_except_pdf() -> None:
    assert native_headers(ID, "text/html")["Content-Security-Policy"] == SANDBOX_CSP
    assert native_headers(ID, "image/png")["Content-Security-Policy"] == SANDBOX_CSP
    assert native_headers(ID, "application/pdf")["Content-Security-Policy"] == PDF_CSP
    assert native_headers(ID, "Application/PDF; x=y")["Content-Security-Policy"] == PDF_CSP
    assert "sandbox" not in PDF_CSP
    assert SANDBOX_CSP == "sandbox; default-src 'none'"
    assert PDF_CSP.startswith("default-src 'none'")


def test_the_fixed_headers() -> None:
    headers = native_headers(ID, "application/pdf")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cross-Origin-Resource-Policy"] == "same-origin"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert set(headers) == {
        "Content-Security-Policy",
        "X-Content-Type-Options",
        "Cross-Origin-Resource-Policy",
        "Referrer-Policy",
        "Content-Disposition",
    }


def test_the_name_never_carries_anything_but_safe_characters() -> None:
    # ids are validated upstream; the name is made safe here anyway (RFC 6266 §4.3).
    assert filename('../"evil";\r\nx', "text/plain") == "binary---evil----x.txt"
    assert filename("..", "application/pdf") == "binary-content.pdf"
    assert filename("a.b-C", "image/png") == "binary-a.b-C.png"


def test_results_are_fresh_dicts() -> None:
    first = native_headers(ID, "image/png")
    first["Content-Disposition"] = "changed"
    assert native_headers(ID, "image/png")["Content-Disposition"].startswith("inline;")
