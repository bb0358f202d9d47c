"""The README's SMART Backend Services block, run verbatim against a real `fhirbin serve`."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Server, run_readme_block

pytestmark = pytest.mark.e2e


def test_readme_backend_services_flow_works_as_written(server: Server) -> None:
    result = run_readme_block(server, "SMART Backend Services")
    workdir = server.data_dir.parent
    # The last command fetched the Binary the backend client stored.
    assert result.stdout.endswith("hello from a backend service\n")
    jwks = (workdir / "backend-jwks.json").read_text()
    assert '"d"' not in jwks  # only the public key was registered
