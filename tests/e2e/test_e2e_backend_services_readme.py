"""The README's SMART Backend Services block, run verbatim against a real `fhirbin serve`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import Server, run_readme_block

pytestmark = pytest.mark.e2e


def test_readme_backend_services_flow_works_as_written(server: Server) -> None:
    workdir = server.data_dir.parent
    before = {p.name for p in workdir.iterdir()} | {".venv"}
    result = run_readme_block(server, "SMART Backend Services")
    # The last command fetched the Binary the backend client stored.
    assert result.stdout.endswith("hello from a backend service\n")
    # the private key and the other files are in a temporary folder, not the repository's
    assert {p.name for p in workdir.iterdir()} <= before
    work = Path(result.stdout.split("example files in ", 1)[1].split("\n", 1)[0])
    assert (work / "backend-key.pem").exists()
    jwks = (work / "backend-jwks.json").read_text()
    assert '"d"' not in jwks  # only the public key was registered
    shutil.rmtree(work)
