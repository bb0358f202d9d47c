"""The start-up check for libmagic: a machine without it is told what to install."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fhirbin.cli import cli
from fhirbin.security import sniff
from fhirbin.security.sniff import MissingLibraryError, check_libmagic
from tests.e2e.conftest import free_port

MISSING = "libfhirbin-no-such-magic.so.1"


def test_the_check_passes_where_libmagic_is_installed() -> None:
    check_libmagic()


def test_a_missing_library_is_named_with_its_package_and_the_fix() -> None:
    with pytest.raises(MissingLibraryError) as info:
        check_libmagic(MISSING)
    message = str(info.value)
    assert MISSING in message
    assert "libmagic1" in message
    assert "apt-get install libmagic1" in message


def test_serve_refuses_to_start_without_libmagic_and_says_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sniff, "LIBMAGIC", MISSING)  # the check looks for a library not there
    result = CliRunner().invoke(
        cli, ["serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "data")]
    )
    assert result.exit_code == 1
    assert MISSING in result.output
    assert "apt-get install libmagic1" in result.output
    assert not (tmp_path / "data").exists()
