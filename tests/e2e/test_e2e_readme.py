"""The README's curl flow, run verbatim against a real `fhirbin serve`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import Server, run_readme_block

pytestmark = pytest.mark.e2e


def test_readme_curl_flow_works_as_written(server: Server) -> None:
    workdir = server.data_dir.parent
    before = {p.name for p in workdir.iterdir()} | {".venv"}
    result = run_readme_block(server, "The flow with curl")
    assert "same bytes" in result.stdout  # cmp of the PDF sent and the one read back
    # the example's files went to a temporary folder, not into the (repository) folder
    assert {p.name for p in workdir.iterdir()} <= before
    work = Path(result.stdout.split("example files in ", 1)[1].split("\n", 1)[0])
    assert work.is_dir()
    assert {p.name for p in work.iterdir()} == {"report.pdf", "copy.pdf", "signed.pdf"}
    shutil.rmtree(work)
    assert '"resourceType":"Binary"' in result.stdout
    assert '"type":"searchset"' in result.stdout
    assert '"total":1' in result.stdout
    assert "same bytes without a token" in result.stdout  # step 5, the signed URL
