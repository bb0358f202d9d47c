"""The README's SMART Backend Services block, run verbatim against a real `fhirbin serve`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Server

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def readme_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## SMART Backend Services", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the README uses openssl")
def test_readme_backend_services_flow_works_as_written(server: Server) -> None:
    script = readme_block()
    assert "BASE=http://127.0.0.1:8080/fhir" in script
    script = script.replace("BASE=http://127.0.0.1:8080/fhir", f"BASE={server.base}")
    workdir = server.data_dir.parent
    venv = workdir / ".venv"
    if not venv.exists():
        venv.symlink_to(Path(sys.prefix))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIRBIN_")}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    # The last command fetched the Binary the backend client stored.
    assert result.stdout.endswith("hello from a backend service\n")
    jwks = (workdir / "backend-jwks.json").read_text()
    assert '"d"' not in jwks  # only the public key was registered
