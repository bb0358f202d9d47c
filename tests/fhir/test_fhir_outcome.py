"""fhirbin.fhir.outcome: OperationOutcome bodies, and the purity of fhirbin.fhir."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import fhirbin.fhir
from fhirbin.errors import BadRequest, NotAcceptable
from fhirbin.fhir.outcome import operation_outcome, outcome_for


def test_operation_outcome_has_one_issue_with_expression_list() -> None:
    assert operation_outcome("invalid", "Bad id", expression="http.id") == {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "invalid",
                "diagnostics": "Bad id",
                "expression": ["http.id"],
            }
        ],
    }


def test_operation_outcome_without_expression_has_no_expression_element() -> None:
    outcome = operation_outcome("informational", "Created", severity="information")
    assert outcome["issue"] == [
        {"severity": "information", "code": "informational", "diagnostics": "Created"}
    ]


def test_unknown_severity_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="severity"):
        operation_outcome("invalid", "x", severity="bad")


@pytest.mark.parametrize(
    ("error", "code", "expression"),
    [
        (BadRequest("Nope", expression="Binary.data"), "invalid", ["Binary.data"]),
        (NotAcceptable("No XML"), "not-supported", None),
        (BadRequest("Nope", code="not-supported"), "not-supported", None),
    ],
)
def test_outcome_for_reports_the_error(
    error: BadRequest, code: str, expression: list[str] | None
) -> None:
    (issue,) = outcome_for(error)["issue"]
    assert issue["severity"] == "error"
    assert issue["code"] == code
    assert issue["diagnostics"] == error.diagnostics
    assert issue.get("expression") == expression


ALLOWED_FHIRBIN = ("fhirbin.errors", "fhirbin.config", "fhirbin.fhir")


@pytest.mark.parametrize(
    "module", sorted(Path(fhirbin.fhir.__file__).parent.glob("*.py")), ids=lambda p: p.name
)
def test_fhir_package_imports_only_the_stdlib_errors_and_config(module: Path) -> None:
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top == "fhirbin":
                allowed = any(name == a or name.startswith(a + ".") for a in ALLOWED_FHIRBIN)
                assert allowed, f"{module.name} imports {name}"
            else:
                # defusedxml: a hardened parser (no DTDs, no entities), pure like the stdlib's;
                # ijson: an incremental JSON parser (fhir/binary_stream.py), pure as well.
                pure = top in sys.stdlib_module_names or top in ("defusedxml", "ijson")
                assert pure, f"{module.name} imports {name}"
