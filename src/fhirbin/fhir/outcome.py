"""OperationOutcome resources: the body of every FHIR error answer.

Owns the R4 OperationOutcome JSON shape (operationoutcome.html): one issue with a severity, an
IssueType code, human-readable ``diagnostics`` and, where the problem has a location, a
simplified FHIRPath ``expression`` such as ``Binary.data`` or ``http._id``
(operationoutcome.html#loc). The HTTP layer turns ``fhirbin.errors`` exceptions into these.
"""

from __future__ import annotations

from typing import Any

from fhirbin.errors import FhirbinError

# R4 valueset-issue-severity: the four values OperationOutcome.issue.severity may take.
SEVERITIES = frozenset({"fatal", "error", "warning", "information"})


def operation_outcome(
    code: str,
    diagnostics: str,
    severity: str = "error",
    expression: str | None = None,
) -> dict[str, Any]:
    """An R4 OperationOutcome with one issue.

    ``code`` is an IssueType code (R4 valueset-issue-type); ``severity`` must be one of
    :data:`SEVERITIES`. A failing HTTP status needs ``error`` or ``fatal``
    (operationoutcome.html#using), which is why ``error`` is the default.
    """
    if severity not in SEVERITIES:
        raise ValueError(f"unknown OperationOutcome severity {severity!r}")
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def outcome_for(error: FhirbinError) -> dict[str, Any]:
    """The OperationOutcome that reports ``error`` (its code, diagnostics and expression)."""
    return operation_outcome(error.code, error.diagnostics, "error", error.expression)
