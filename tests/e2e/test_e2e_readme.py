"""The README's curl flow, run verbatim against a real `fhirbin serve`."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Server, run_readme_block

pytestmark = pytest.mark.e2e


def test_readme_curl_flow_works_as_written(server: Server) -> None:
    result = run_readme_block(server, "The flow with curl")
    workdir = server.data_dir.parent
    assert (workdir / "report.pdf").read_bytes() == (workdir / "copy.pdf").read_bytes()
    assert '"resourceType":"Binary"' in result.stdout
    assert '"type":"searchset"' in result.stdout
    assert '"total":1' in result.stdout
