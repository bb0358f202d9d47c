"""Deep inspection through the real app (docs/security.md#deep-inspection): every hostile
sample of the corpus is refused with a 422 naming its rule and leaves nothing behind, in the
raw and the FHIR JSON forms; every honest twin is stored and read back byte-exact."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.api.test_api_audit import stored
from tests.api.test_api_screening import Server, id_of, outcome, serve
from tests.inspection.corpus import CORPUS, zip_bytes

pytestmark = pytest.mark.anyio

NAMES = [entry[0] for entry in CORPUS]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with serve(tmp_path) as server:
        yield server


def fhir_json(content: bytes, content_type: str) -> bytes:
    body = {
        "resourceType": "Binary",
        "contentType": content_type,
        "data": base64.b64encode(content).decode(),
    }
    return json.dumps(body).encode()


@pytest.mark.parametrize("form", ["raw", "fhir+json"])
@pytest.mark.parametrize(("name", "hostile", "honest", "declared", "rule"), CORPUS, ids=NAMES)
async def test_hostile_sample_is_refused_and_its_twin_is_stored_byte_exact(
    server: Server, form: str, name: str, hostile: bytes, honest: bytes, declared: str, rule: str
) -> None:
    def send(content: bytes) -> tuple[bytes, str]:
        if form == "raw":
            return content, declared
        return fhir_json(content, declared), "application/fhir+json"

    response = await server.post(*send(hostile))
    assert response.status_code == 422, response.text
    code, diagnostics = outcome(response)
    assert code == "business-rule"
    assert f"inspection rule {rule}" in diagnostics
    await server.assert_nothing_stored()

    binary_id = id_of(await server.post(*send(honest)))
    read = await server.client.get(
        f"/fhir/Binary/{binary_id}", headers={**server.auth, "Accept": declared}
    )
    assert read.status_code == 200
    assert read.content == honest


async def test_an_update_with_hostile_content_keeps_the_current_version(server: Server) -> None:
    _, hostile, honest, declared, _ = CORPUS[0]
    binary_id = id_of(await server.post(honest, declared))
    response = await server.put(binary_id, hostile, declared)
    assert response.status_code == 422
    current = await server.client.get(f"/fhir/Binary/{binary_id}", headers=server.auth)
    assert current.headers["etag"] == 'W/"1"'


async def test_a_refusal_is_audited_with_its_finding(server: Server) -> None:
    _, hostile, _, declared, rule = CORPUS[0]
    assert (await server.post(hostile, declared)).status_code == 422
    records = await stored(server.app)
    assert any(rule in (record.detail or "") for record in records)


async def test_a_zip_over_the_expanded_limit_is_refused(tmp_path: Path) -> None:
    archive = zip_bytes(("zeros.bin", b"\0" * (2 * 1024 * 1024)))
    async with serve(tmp_path, inspect_zip_max_expanded=1024 * 1024) as server:
        response = await server.post(archive, "application/zip")
        assert response.status_code == 422
        assert "zip-bomb" in outcome(response)[1]


async def test_inspection_off_and_allowed_rules_store_the_content(tmp_path: Path) -> None:
    _, hostile, _, declared, _ = CORPUS[0]
    async with serve(tmp_path / "off", inspect="off") as server:
        assert (await server.post(hostile, declared)).status_code == 201
    async with serve(tmp_path / "allow", inspect_allow="pdf-javascript") as server:
        assert (await server.post(hostile, declared)).status_code == 201
