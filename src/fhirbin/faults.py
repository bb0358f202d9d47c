"""Faults of the things fhirbin depends on, raised by the stores, rendered by ``api/errors.py``.

The stores (``storage/``, ``metadata/``) know nothing of HTTP or FHIR, so they do not raise
``errors.FhirbinError``. They translate their drivers' failures into these two instead, naming
the dependency, and the API answers them the same way whatever the backend:

    DependencyUnavailable   503 + Retry-After: the database or the content store cannot be
                            reached (refused, timed out, bad credentials, missing bucket)
    OutOfSpace              507: the disk or the database is full

Both are transient: nothing is cached about them, so the next request tries again and service
resumes on its own when the dependency is back (docs/operations.md, "Faults").
"""

from __future__ import annotations


class DependencyUnavailable(Exception):
    """A dependency (``"database"``, ``"content store"``, ``"virus scanner"``) cannot serve now.

    ``detail`` is safe to show an operator (no credentials); the API shows clients only the
    dependency's name.
    """

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(f"{dependency}: {detail}")
        self.dependency = dependency
        self.detail = detail


class OutOfSpace(Exception):
    """A write failed because ``dependency`` has no room left; nothing of it is visible."""

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(f"{dependency}: {detail}")
        self.dependency = dependency
        self.detail = detail
