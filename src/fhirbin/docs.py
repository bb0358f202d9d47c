"""Keeps the generated parts of the docs in step with the settings table.

docs/configuration.md and README.md hold the table between ``<!-- settings:begin -->`` and
``<!-- settings:end -->``; ``fhirbin config-docs --write`` rewrites it and tests/test_docs.py
fails when it is stale.
"""

from __future__ import annotations

from pathlib import Path

from fhirbin.config import settings_markdown

BEGIN = "<!-- settings:begin -->"
END = "<!-- settings:end -->"
FILES = ("README.md", "docs/configuration.md")


def render_into(text: str) -> str:
    """``text`` with the block between the markers replaced by the current table."""
    head, begin, rest = text.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"missing {BEGIN} / {END} markers")
    return f"{head}{BEGIN}\n{settings_markdown()}{END}{tail}"


def write_config_docs(root: Path) -> list[Path]:
    written = []
    for name in FILES:
        path = root / name
        path.write_text(render_into(path.read_text(encoding="utf-8")), encoding="utf-8")
        written.append(path)
    return written
