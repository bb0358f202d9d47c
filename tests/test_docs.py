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


# --- the project cites its own decisions (docs/decisions.md), never a document outside it ------

_OUTSIDE = re.compile(r"\bD[0-9]{1,2}\b|shared/")


def _cited_files() -> list[str]:
    files = [p for p in (ROOT / "src").rglob("*.py")] + list((ROOT / "docs").glob("*.md"))
    return sorted(str(p.relative_to(ROOT)) for p in [*files, ROOT / "README.md"])


@pytest.mark.parametrize(
    "name",
    _cited_files(),
)
def test_no_decision_labels_or_documents_from_outside_the_repository(name: str) -> None:
    text = (ROOT / name).read_text(encoding="utf-8")
    found = [m.group(0) for m in _OUTSIDE.finditer(text)]
    assert not found, f"{name} cites {found}: cite docs/decisions.md#<anchor> instead"


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    text = doc.read_text(encoding="utf-8")
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


def test_every_cited_docs_anchor_exists() -> None:
    cited = re.compile(r"(?:docs/)?(\w+)\.md#([a-z0-9-]+)((?:,\s*#[a-z0-9-]+)*)")
    sources = [*(ROOT / "src").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]
    sources += [*(ROOT / "docs").glob("*.md"), ROOT / "README.md"]
    missing = []
    for source in sources:
        for match in cited.finditer(source.read_text(encoding="utf-8")):
            doc = ROOT / "docs" / f"{match.group(1)}.md"
            if not doc.exists():
                continue
            names = [match.group(2), *re.findall(r"#([a-z0-9-]+)", match.group(3))]
            missing += [
                f"{source.relative_to(ROOT)}: {doc.name}#{n}"
                for n in names
                if n not in _anchors(doc)
            ]
    assert not missing
    assert "read-representation" in _anchors(ROOT / "docs" / "decisions.md")
