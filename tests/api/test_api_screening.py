"""Content screening through the real app, playing the attacker
(docs/security.md#content-screening-every-create-and-update).

A real clamd (tests/clamd_support.py) with the project's own signatures scans every upload;
each hostile upload must be refused with the right status and an OperationOutcome saying what
was found, and must leave nothing behind: no blob (not even a temporary one) and no catalogue
row. The legitimate flows must still pass.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from fhirbin.api.app import create_app
from fhirbin.config import load_settings
from tests import clamd_support
from tests.clamd_support import EICAR, EICAR_SIGNATURE, MARKER, MARKER_SIGNATURE, Clamd
from tests.inspection import corpus
from tests.security import samples
from tests.support import ALL_SCOPES, BASE, register, runtime_of

pytestmark = pytest.mark.anyio

clamd = clamd_support.clamd

MiB = 1024 * 1024


@dataclass
class Server:
    app: Starlette
    client: httpx.AsyncClient
    auth: dict[str, str]

    async def post(
        self, body: bytes | AsyncIterator[bytes], content_type: str, **headers: str
    ) -> httpx.Response:
        return await self.client.post(
            "/fhir/Binary",
            content=body,
            headers={**self.auth, "Content-Type": content_type, **headers},
        )

    async def put(self, binary_id: str, body: bytes, content_type: str) -> httpx.Response:
        return await self.client.put(
            f"/fhir/Binary/{binary_id}",
            content=body,
            headers={**self.auth, "Content-Type": content_type},
        )

    def stored_files(self) -> list[Path]:
        """Every file in the blob folder, temporary ones included."""
        blob_dir = runtime_of(self.app).settings.blob_dir
        return [p for p in blob_dir.rglob("*") if p.is_file()] if blob_dir.exists() else []

    async def catalogue_rows(self) -> int:
        return len(await runtime_of(self.app).catalogue.current_all())

    async def assert_nothing_stored(self) -> None:
        assert self.stored_files() == []
        assert await self.catalogue_rows() == 0


@contextlib.asynccontextmanager
async def serve(tmp_path: Path, **overrides: Any) -> AsyncIterator[Server]:
    settings = load_settings(
        {},
        {
            "data_dir": tmp_path / "data",
            "base_url": BASE,
            "revocation_check_interval": 0,
            "max_binary_size": 4 * MiB,
            **overrides,
        },
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            client_id, secret = await register(app, ALL_SCOPES)
            token = await client.post(
                "/fhir/auth/token",
                data={"grant_type": "client_credentials", "scope": ALL_SCOPES},
                auth=(client_id, secret),
            )
            assert token.status_code == 200, token.text
            auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
            yield Server(app, client, auth)


@pytest.fixture
async def scanned(tmp_path: Path, clamd: Clamd) -> AsyncIterator[Server]:
    """The default policy plus a real clamd."""
    async with serve(tmp_path, clamav=clamd.unix_url) as server:
        yield server


def outcome(response: httpx.Response) -> tuple[str, str]:
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    issue = body["issue"][0]
    assert issue["severity"] == "error"
    return issue["code"], issue["diagnostics"]


def id_of(response: httpx.Response) -> str:
    assert response.status_code == 201, response.text
    return str(response.headers["location"].removeprefix(f"{BASE}/Binary/").split("/")[0])


# --- malware ---------------------------------------------------------------------------------


async def test_eicar_is_refused_with_422_and_nothing_is_stored(scanned: Server) -> None:
    response = await scanned.post(EICAR, "text/plain")
    assert response.status_code == 422
    code, diagnostics = outcome(response)
    assert code == "business-rule"
    assert EICAR_SIGNATURE in diagnostics
    await scanned.assert_nothing_stored()


async def test_eicar_declared_as_octet_stream_is_refused(scanned: Server) -> None:
    response = await scanned.post(EICAR, "application/octet-stream")
    assert response.status_code == 422
    await scanned.assert_nothing_stored()


async def test_eicar_inside_a_zip_is_refused(scanned: Server) -> None:
    archive = samples.zip_of(("readme.txt", "hello"), ("eicar.com", EICAR.decode()))
    response = await scanned.post(archive, "application/zip")
    assert response.status_code == 422, response.text
    assert EICAR_SIGNATURE in outcome(response)[1]
    await scanned.assert_nothing_stored()


async def test_eicar_in_a_fhir_binary_body_is_refused(scanned: Server) -> None:
    body = {
        "resourceType": "Binary",
        "contentType": "text/plain",
        "data": base64.b64encode(EICAR).decode(),
    }
    response = await scanned.post(json.dumps(body).encode(), "application/fhir+json")
    assert response.status_code == 422
    await scanned.assert_nothing_stored()


async def test_malware_in_an_update_keeps_the_current_version(scanned: Server) -> None:
    binary_id = id_of(await scanned.post(samples.TEXT, "text/plain"))
    files = scanned.stored_files()
    response = await scanned.put(binary_id, EICAR, "text/plain")
    assert response.status_code == 422
    assert scanned.stored_files() == files
    current = await scanned.client.get(f"/fhir/Binary/{binary_id}", headers=scanned.auth)
    assert current.headers["etag"] == 'W/"1"'
    assert current.content == samples.TEXT


async def test_malware_as_update_as_create_creates_nothing(scanned: Server) -> None:
    response = await scanned.put("client-chosen-id", EICAR, "text/plain")
    assert response.status_code == 422
    await scanned.assert_nothing_stored()
    missing = await scanned.client.get("/fhir/Binary/client-chosen-id", headers=scanned.auth)
    assert missing.status_code == 404


async def test_a_signature_deep_inside_a_streamed_upload_is_found(scanned: Server) -> None:
    async def body() -> AsyncIterator[bytes]:
        block = os.urandom(64 * 1024)
        for _ in range(40):
            yield block
        yield MARKER
        yield block

    response = await scanned.post(body(), "application/octet-stream")
    assert response.status_code == 422
    assert MARKER_SIGNATURE in outcome(response)[1]
    await scanned.assert_nothing_stored()


async def test_the_refusal_follows_the_requested_format(scanned: Server) -> None:
    response = await scanned.post(EICAR, "text/plain", Accept="application/fhir+xml")
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/fhir+xml")
    assert b"business-rule" in response.content


# --- types -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "declared", "found"),
    [
        (samples.PE, "application/pdf", "application/vnd.microsoft.portable-executable"),
        (samples.ELF, "application/pdf", "application/x-executable"),
        (samples.MACH_O, "application/octet-stream", "application/x-mach-binary"),
        (samples.PDF, "image/png", "application/pdf"),
        (samples.HTML, "image/png", "text/html"),
        (samples.SVG, "image/png", "image/svg+xml"),
        (samples.HTML, "text/plain", "text/html"),
        (samples.SHELL, "text/plain", "text/x-shellscript"),
        (samples.SHELL, "application/octet-stream", "text/x-shellscript"),
        (samples.NODE_SCRIPT, "text/plain", "application/javascript"),
        (samples.BATCH, "text/plain", "text/x-msdos-batch"),
    ],
    ids=lambda v: "content" if isinstance(v, bytes) else v,
)
async def test_hostile_content_is_refused_with_415_saying_what_was_found(
    scanned: Server, content: bytes, declared: str, found: str
) -> None:
    response = await scanned.post(content, declared)
    assert response.status_code == 415, response.text
    code, diagnostics = outcome(response)
    assert code == "not-supported"
    assert f"declared {declared} but the content is {found}" in diagnostics
    await scanned.assert_nothing_stored()


@pytest.mark.parametrize(
    "declared",
    ["application/x-msdownload", "application/x-sh", "text/javascript", "application/hta"],
)
async def test_declared_executables_and_scripts_are_refused(scanned: Server, declared: str) -> None:
    response = await scanned.post(b"harmless bytes", declared)
    assert response.status_code == 415
    assert "executables and scripts are refused" in outcome(response)[1]
    await scanned.assert_nothing_stored()


async def test_a_hostile_fhir_binary_body_is_refused(scanned: Server) -> None:
    body = {
        "resourceType": "Binary",
        "contentType": "application/pdf",
        "data": base64.b64encode(samples.PE).decode(),
    }
    response = await scanned.post(json.dumps(body).encode(), "application/fhir+json")
    assert response.status_code == 415
    await scanned.assert_nothing_stored()


@pytest.mark.parametrize(
    ("content", "declared"),
    [
        (samples.PDF, "application/pdf"),
        (samples.PNG, "image/png"),
        (samples.JPEG, "image/jpeg"),
        (samples.CSV, "text/csv"),
        (samples.TEXT, "text/plain; charset=utf-8"),
        (samples.FHIR_JSON, "application/fhir+json"),  # a Patient: stored as is
        (samples.FHIR_XML, "application/fhir+xml"),
        (samples.CDA, "application/hl7-v3+xml"),
        (samples.HL7V2, "x-application/hl7-v2+er7"),
        (samples.DOCX, "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        (samples.WAV, "audio/wav"),
        (corpus.HTML_OK, "text/html"),  # allowed, and served as an attachment in a sandbox
        (corpus.SVG_OK, "image/svg+xml"),
        (os.urandom(5000), "application/octet-stream"),
        (samples.PDF, "application/octet-stream"),
        (b"", "application/pdf"),  # docs/decisions.md#empty-binary
    ],
    ids=lambda v: "content" if isinstance(v, bytes) else v,
)
async def test_legitimate_uploads_pass_screening_and_scanning(
    scanned: Server, content: bytes, declared: str
) -> None:
    binary_id = id_of(await scanned.post(content, declared))
    read = await scanned.client.get(f"/fhir/Binary/{binary_id}", headers=scanned.auth)
    assert read.status_code == 200
    assert read.content == content
    assert read.headers["content-type"] == declared


async def test_a_fhir_binary_body_with_a_real_png_passes(scanned: Server) -> None:
    body = {
        "resourceType": "Binary",
        "contentType": "image/png",
        "data": base64.b64encode(samples.PNG).decode(),
    }
    response = await scanned.post(json.dumps(body).encode(), "application/fhir+json")
    assert response.status_code == 201, response.text


async def test_type_mismatch_accept_stores_a_contradiction(tmp_path: Path) -> None:
    async with serve(tmp_path, type_mismatch="accept") as server:
        assert (await server.post(samples.PDF, "image/png")).status_code == 201
        assert (await server.post(samples.PE, "application/pdf")).status_code == 415


async def test_allow_types_limits_the_declared_types(tmp_path: Path) -> None:
    async with serve(tmp_path, allow_types="application/pdf,image/*") as server:
        assert (await server.post(samples.PDF, "application/pdf")).status_code == 201
        assert (await server.post(samples.PNG, "image/png")).status_code == 201
        response = await server.post(samples.TEXT, "text/plain")
        assert response.status_code == 415
        assert "FHIRBIN_ALLOW_TYPES" in outcome(response)[1]


async def test_a_custom_deny_list(tmp_path: Path) -> None:
    async with serve(tmp_path, deny_types="executables,text/html,image/svg+xml") as server:
        assert (await server.post(samples.HTML, "text/html")).status_code == 415
        assert (await server.post(samples.SVG, "application/octet-stream")).status_code == 415
        assert (await server.post(samples.PDF, "application/pdf")).status_code == 201


# --- clamd outages ---------------------------------------------------------------------------


async def test_clamd_down_fails_closed_with_503_and_retry_after(tmp_path: Path) -> None:
    async with serve(tmp_path, clamav=f"unix://{tmp_path / 'no-clamd.sock'}") as server:
        response = await server.post(samples.PDF, "application/pdf")
        assert response.status_code == 503
        assert response.headers["retry-after"].isdigit()
        code, diagnostics = outcome(response)
        assert code == "transient"
        assert "virus scanner" in diagnostics
        await server.assert_nothing_stored()


async def test_clamd_down_with_fail_open_stores_unscanned(tmp_path: Path) -> None:
    async with serve(
        tmp_path, clamav=f"tcp://127.0.0.1:{clamd_support.free_port()}", clamav_fail_open=True
    ) as server:
        response = await server.post(samples.PDF, "application/pdf")
        assert response.status_code == 201
        # the type policy still applies
        assert (await server.post(samples.PE, "application/pdf")).status_code == 415


async def test_scanning_over_tcp(tmp_path: Path, clamd: Clamd) -> None:
    async with serve(tmp_path, clamav=clamd.tcp_url) as server:
        assert (await server.post(EICAR, "text/plain")).status_code == 422
        assert (await server.post(samples.PDF, "application/pdf")).status_code == 201


# --- memory ----------------------------------------------------------------------------------


@contextlib.contextmanager
def peak_memory() -> Iterator[dict[str, int]]:
    """Python's peak allocations (tracemalloc) and the process's peak RSS growth (Linux)."""
    result: dict[str, int] = {}
    clear_refs = Path("/proc/self/clear_refs")
    clear_refs.write_text("5")  # resets VmHWM, the peak resident set size
    rss_before = _status_kib("VmRSS")
    tracemalloc.start()
    try:
        yield result
    finally:
        _, result["python_peak"] = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        result["rss_growth"] = (_status_kib("VmHWM") - rss_before) * 1024


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/self/status")


async def test_a_200_mib_upload_is_scanned_with_flat_memory(tmp_path: Path, clamd: Clamd) -> None:
    size, block = 200 * MiB, os.urandom(256 * 1024)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(size // len(block)):
            yield block

    async with serve(tmp_path, clamav=clamd.unix_url, max_binary_size=256 * MiB) as server:
        with peak_memory() as peak:
            response = await server.post(body(), "application/octet-stream")
        assert response.status_code == 201, response.text
        assert peak["python_peak"] < 16 * MiB, peak
        assert peak["rss_growth"] < 64 * MiB, peak
        binary_id = id_of(response)
        head = await server.client.head(f"/fhir/Binary/{binary_id}", headers=server.auth)
        assert head.headers["content-length"] == str(size)
