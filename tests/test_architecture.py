"""Imports go one way (docs/development.md#layout): a wrong import fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "fhirbin"

#: package → fhirbin packages it must never import
FORBIDDEN = {
    "fhir": {
        "api",
        "service",
        "storage",
        "metadata",
        "auth",
        "security",
        "cli",
        "runtime",
        "maintenance",
    },
    "auth": {"api", "service", "storage", "metadata", "cli", "runtime", "maintenance"},
    "security": {"api", "service", "storage", "metadata", "cli", "runtime", "maintenance"},
    "storage": {
        "api",
        "service",
        "fhir",
        "metadata",
        "auth",
        "security",
        "cli",
        "runtime",
        "maintenance",
    },
    "metadata": {
        "api",
        "service",
        "fhir",
        "storage",
        "auth",
        "security",
        "cli",
        "runtime",
        "maintenance",
    },
    "service": {"api", "cli", "runtime", "maintenance"},
    "api": {"cli"},
    "providers": {"api", "service", "storage", "cli", "runtime", "maintenance"},
    "scanning": {
        "api",
        "service",
        "storage",
        "metadata",
        "auth",
        "providers",
        "cli",
        "runtime",
        "maintenance",
    },
    "inspection": {
        "api",
        "service",
        "metadata",
        "auth",
        "providers",
        "cli",
        "runtime",
        "maintenance",
    },
    "faults": {"api", "service", "storage", "metadata", "auth", "providers", "cli", "runtime"},
    "auditlog": {"api", "service", "cli", "runtime"},
    "maintenance": {"api", "cli", "runtime"},
    "runtime": {"api", "cli"},
    # the transfer client talks HTTP to a server; it never touches the stores itself
    "transfer": {"api", "service", "storage", "metadata", "cli", "runtime", "maintenance"},
    "metrics": {"api", "service", "storage", "metadata", "auth", "providers", "cli", "runtime"},
}
WEB = ("starlette", "granian", "httpx")
#: providers fetch JWK Sets and asks introspection endpoints: the HTTP client, never the server.
HTTP_CLIENT = {"providers": ("httpx",), "runtime": ("httpx",), "transfer": ("httpx",)}


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def package_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_go_one_way(path: Path) -> None:
    package = package_of(path)
    for name in imports_of(path):
        parts = name.split(".")
        if parts[0] == "fhirbin" and len(parts) > 1:
            assert parts[1] not in FORBIDDEN.get(package, set()), f"{package} imports {name}"
        if (
            package != "api"
            and package != "cli"
            and not name.startswith(HTTP_CLIENT.get(package, ()))
        ):
            assert not name.startswith(WEB), f"{package} imports the web framework ({name})"


#: Settings are read by the composition root, the CLI and the web app (which gets them from the
#: runtime); every other package receives plain typed values.
READS_SETTINGS = {"runtime", "cli", "api", "config", "docs"}


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_only_the_composition_root_and_the_cli_read_settings(path: Path) -> None:
    if package_of(path) in READS_SETTINGS:
        return
    names = {
        alias.name
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.module == "fhirbin.config"
        for alias in node.names
    }
    assert "Settings" not in names, f"{path.relative_to(SRC)} takes Settings: use plain values"


def test_the_rule_sees_a_wrong_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from fhirbin.api.app import create_app\nimport starlette\n")
    assert imports_of(bad) == {"fhirbin.api.app", "starlette"}
