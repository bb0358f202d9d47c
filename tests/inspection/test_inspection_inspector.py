"""The inspection stage on its own: which checks run, the spooled copy for stores without a
local file, the settings, and flat memory for large uploads through the real app."""

from __future__ import annotations

import base64
import os
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fhirbin.config import SettingsError, load_settings
from fhirbin.errors import UnprocessableContent
from fhirbin.inspection.inspector import Inspector, kinds
from fhirbin.inspection.rules import Limits, parse_rules
from fhirbin.runtime import build_inspector
from fhirbin.storage.memory import MemoryBlobStore
from tests.api.test_api_operate import sample
from tests.api.test_api_screening import id_of, peak_memory, serve
from tests.inspection.corpus import CORPUS, PLAIN_PDF, pdf

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_a_store_without_local_files_is_inspected_from_a_spooled_copy(
    tmp_path: Path,
) -> None:
    store = MemoryBlobStore()
    inspector = Inspector(Limits(), spool_dir=tmp_path)
    _, hostile, honest, declared, rule = CORPUS[0]
    staged = await store.stage(_once(hostile))
    assert staged.path is None
    with pytest.raises(UnprocessableContent, match=rule):
        await inspector(declared, None, staged)  # sniffs the head itself
    await inspector(declared, None, await store.stage(_once(honest)))
    assert os.listdir(tmp_path) == []  # the spooled copies are gone


def test_text_that_mentions_pdf_markers_is_not_judged_as_a_pdf() -> None:
    letter = b"Dear colleague, the file starts with %PDF- and has /JavaScript in it.\n"
    assert kinds("text/plain", letter) == set()
    assert kinds("application/octet-stream", b"junk" + PLAIN_PDF) == {"pdf"}


def test_rule_names_are_checked() -> None:
    assert parse_rules(" pdf-xfa, office-macros ", "X") == {"pdf-xfa", "office-macros"}
    with pytest.raises(ValueError, match="no-such-rule"):
        parse_rules("no-such-rule", "X")
    settings = load_settings({}, {"data_dir": Path("x"), "inspect_allow": "no-such-rule"})
    with pytest.raises(SettingsError, match="FHIRBIN_INSPECT_ALLOW"):
        build_inspector(settings)
    assert build_inspector(load_settings({}, {"data_dir": Path("x"), "inspect": "off"})) is None
    with pytest.raises(SettingsError, match="FHIRBIN_INSPECT"):
        load_settings({"FHIRBIN_INSPECT": "warn"})


async def test_a_fhir_xml_body_is_inspected_too(tmp_path: Path) -> None:
    _, hostile, honest, declared, rule = CORPUS[0]

    def body(content: bytes) -> bytes:
        data = base64.b64encode(content).decode()
        return (
            f'<Binary xmlns="http://hl7.org/fhir"><contentType value="{declared}"/>'
            f'<data value="{data}"/></Binary>'
        ).encode()

    async with serve(tmp_path) as server:
        response = await server.post(body(hostile), "application/fhir+xml")
        assert response.status_code == 422, response.text
        assert rule in response.text
        id_of(await server.post(body(honest), "application/fhir+xml"))


async def test_refusals_by_inspection_are_counted_as_a_screening_verdict(
    tmp_path: Path,
) -> None:
    verdict = {"verdict": "inspection-refused"}
    async with serve(tmp_path) as server:
        for _, hostile, honest, declared, rule in CORPUS[:2]:
            response = await server.post(hostile, declared)
            assert response.status_code == 422, response.text
            assert rule in response.text
            id_of(await server.post(honest, declared))  # the honest twin: not counted
        text = (await server.client.get("/metrics")).text
        assert sample(text, "fhirbin_screening_verdicts_total", **verdict) == 2


def big_pdf(size: int) -> bytes:
    """A PDF whose one stream fills ``size`` bytes, with JavaScript at the very end."""
    stream = b"<< /Length %d >>\nstream\n" % size + os.urandom(size) + b"\nendstream"
    return pdf(b"/OpenAction 4 0 R ", stream, b"<< /S /JavaScript /JS (x) >>")


def big_zip(path: Path, size: int) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("noise.bin", os.urandom(size), zipfile.ZIP_STORED)
        archive.writestr("../escape.txt", b"x")


@pytest.mark.parametrize("kind", ["pdf", "zip"])
async def test_large_uploads_are_inspected_with_flat_memory(tmp_path: Path, kind: str) -> None:
    size = 96 * MiB
    source = tmp_path / "source"
    if kind == "pdf":
        source.write_bytes(big_pdf(size))
    else:
        big_zip(source, size)

    async def body() -> AsyncIterator[bytes]:
        with source.open("rb") as file:
            while block := file.read(MiB):
                yield block

    declared = "application/pdf" if kind == "pdf" else "application/zip"
    async with serve(tmp_path, max_binary_size=128 * MiB) as server:
        with peak_memory() as peak:
            response = await server.post(body(), declared)
        assert response.status_code == 422, response.text  # the finding at the end was seen
        assert peak["python_peak"] < 16 * MiB, peak
        assert peak["rss_growth"] < 64 * MiB, peak
        await server.assert_nothing_stored()
