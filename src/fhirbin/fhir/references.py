"""Checks for ``X-Security-Context`` values (R4 binary.html#rest;
docs/decisions.md#x-security-context).

The header's value *is* ``Binary.securityContext.reference``: a literal reference, relative
(``Type/id``, optionally ``Type/id/_history/vid``) or absolute (``http(s)://…/Type/id``).
Blank, repeated or malformed values are a 400 rather than silently stored, because a wrong
security context would later grant or deny access to the wrong people.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from fhirbin.errors import BadRequest

# R4 references.html#literal: [Type]/[id] with an optional /_history/[vid]; ids per datatypes#id.
_RELATIVE = r"[A-Z][A-Za-z]{1,63}/[A-Za-z0-9\-\.]{1,64}(/_history/[A-Za-z0-9\-\.]{1,64})?"
_REFERENCE_RE = re.compile(rf"(?:https?://[^\s/?#]+(?:/[^\s?#]*)?/)?{_RELATIVE}")


def check_reference(value: str, expression: str = "Binary.securityContext.reference") -> str:
    if not _REFERENCE_RE.fullmatch(value):
        raise BadRequest(
            f"{value!r} is not a FHIR literal reference such as 'DocumentReference/123' or "
            "'https://example.org/fhir/Patient/42'.",
            expression=expression,
        )
    return value


def security_context_header(values: Sequence[str]) -> str | None:
    """The one ``X-Security-Context`` value of a request, or None when the header is absent."""
    if not values:
        return None
    if len(values) > 1:
        raise BadRequest(
            "X-Security-Context was sent more than once; send exactly one reference.",
            expression="http.X-Security-Context",
        )
    value = values[0].strip()
    if not value:
        raise BadRequest("X-Security-Context is empty.", expression="http.X-Security-Context")
    return check_reference(value, expression="http.X-Security-Context")
