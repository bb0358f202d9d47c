"""The docs say what the code does: settings tables are current, README commands exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fhirbin.config import SETTINGS
from fhirbin.docs import FILES, render_into

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", FILES)
def test_generated_settings_table_is_current(name: str) -> None:
    text = (ROOT / name).read_text(encoding="utf-8")
    assert render_into(text) == text, f"{name} is stale: run `make docs`"


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.env)
def test_every_setting_is_documented(setting: object) -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert f"`{setting.env}`" in text  # type: ignore[attr-defined]


def test_readme_quick_start_names_make_targets_that_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    targets = re.findall(r"^make (\w+)", quick, flags=re.MULTILINE)
    assert targets == ["serve", "test"]
    for target in targets:
        assert re.search(rf"^{target}:", makefile, flags=re.MULTILINE)


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
