"""Safe serving headers on native reads through the real app
(docs/security.md#serving-native-content).

Every native 200/206 (and HEAD) carries Content-Disposition (inline only for passive types),
the CSP sandbox (a PDF gets a viewer-compatible policy instead), nosniff, CORP and
Referrer-Policy; the FHIR forms of a Binary are JSON/XML documents and carry none of the
Binary-specific ones.
"""

from __future__ import annotations

import httpx
import pytest

from fhirbin.security.serving import PDF_CSP, SANDBOX_CSP
from tests.security import samples
from tests.support import BASE

#: These tests store active content on purpose, to see how it is served (the defence behind
#: the deep inspection, which would refuse it at upload).
SETTINGS_OVERRIDES = {"inspect": "off"}

pytestmark = pytest.mark.anyio


async def upload(
    client: httpx.AsyncClient, auth: dict[str, str], content: bytes, content_type: str
) -> str:
    response = await client.post(
        "/fhir/Binary", content=content, headers={**auth, "Content-Type": content_type}
    )
    assert response.status_code == 201, response.text
    return str(response.headers["location"].removeprefix(f"{BASE}/Binary/").split("/")[0])


def assert_safe(response: httpx.Response, disposition: str, name: str, csp: str) -> None:
    headers = response.headers
    assert headers["content-disposition"] == (
        f"{disposition}; filename=\"{name}\"; filename*=UTF-8''{name}"
    )
    assert headers["content-security-policy"] == csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cross-origin-resource-policy"] == "same-origin"
    assert headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize(
    ("content", "content_type", "disposition", "ext"),
    [
        (samples.PDF, "application/pdf", "inline", "pdf"),
        (samples.PNG, "image/png", "inline", "png"),
        (samples.JPEG, "image/jpeg", "inline", "jpg"),
        (samples.WAV, "audio/wav", "inline", "wav"),
        (samples.TEXT, "text/plain; charset=utf-8", "inline", "txt"),
        (samples.HTML, "text/html", "attachment", "html"),
        (samples.SVG, "image/svg+xml", "attachment", "svg"),
        (samples.CDA, "application/hl7-v3+xml", "attachment", "xml"),
        (samples.FHIR_JSON, "application/fhir+json", "attachment", "json"),
        (samples.CSV, "text/csv", "attachment", "csv"),
        (samples.DOCX, "application/zip", "attachment", "zip"),
        (samples.PNG, "application/octet-stream", "attachment", "bin"),
    ],
    ids=lambda v: "content" if isinstance(v, bytes) else v,
)
async def test_native_reads_carry_the_safe_serving_headers(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    content: bytes,
    content_type: str,
    disposition: str,
    ext: str,
) -> None:
    binary_id = await upload(client, auth, content, content_type)
    csp = PDF_CSP if content_type == "application/pdf" else SANDBOX_CSP
    name = f"binary-{binary_id}.{ext}"
    read = await client.get(f"/fhir/Binary/{binary_id}", headers=auth)
    assert read.status_code == 200
    assert read.content == content
    assert read.headers["content-type"] == content_type
    assert_safe(read, disposition, name, csp)
    head = await client.head(f"/fhir/Binary/{binary_id}", headers=auth)
    assert_safe(head, disposition, name, csp)
    vread = await client.get(f"/fhir/Binary/{binary_id}/_history/1", headers=auth)
    assert_safe(vread, disposition, name, csp)


async def test_html_with_script_is_an_attachment_in_a_sandbox(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    binary_id = await upload(client, auth, samples.HTML, "text/html; charset=utf-8")
    read = await client.get(f"/fhir/Binary/{binary_id}", headers={**auth, "Accept": "text/html"})
    assert read.headers["content-disposition"].startswith("attachment;")
    assert read.headers["content-security-policy"] == "sandbox; default-src 'none'"


async def test_range_responses_carry_them_too(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    binary_id = await upload(client, auth, samples.SVG, "image/svg+xml")
    name = f"binary-{binary_id}.svg"
    single = await client.get(f"/fhir/Binary/{binary_id}", headers={**auth, "Range": "bytes=0-9"})
    assert single.status_code == 206
    assert_safe(single, "attachment", name, SANDBOX_CSP)
    multi = await client.get(
        f"/fhir/Binary/{binary_id}", headers={**auth, "Range": "bytes=0-1, 5-6"}
    )
    assert multi.status_code == 206
    assert multi.headers["content-type"].startswith("multipart/byteranges")
    assert_safe(multi, "attachment", name, SANDBOX_CSP)


async def test_the_fhir_forms_are_documents_not_downloads(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    binary_id = await upload(client, auth, samples.HTML, "text/html")
    for accept in ("application/fhir+json", "application/fhir+xml"):
        read = await client.get(f"/fhir/Binary/{binary_id}", headers={**auth, "Accept": accept})
        assert read.status_code == 200
        assert "content-disposition" not in read.headers
        assert read.headers["x-content-type-options"] == "nosniff"
