"""The ``Prefer: return=`` preference on create and update (R4 http.html#prefer, RFC 7240).

fhirbin decision D7: without a preference, native uploads get ``minimal`` (headers only) and
FHIR-JSON uploads get ``representation``.
"""

from __future__ import annotations

from enum import Enum


class Return(Enum):
    MINIMAL = "minimal"
    REPRESENTATION = "representation"
    OPERATION_OUTCOME = "OperationOutcome"


_BY_VALUE = {r.value.lower(): r for r in Return}


def prefer_return(prefer: str | None, default: Return) -> Return:
    """The ``return`` preference of a ``Prefer`` header; unknown values are ignored.

    RFC 7240 §2: a server ignores preferences it does not understand.
    """
    if not prefer:
        return default
    for item in prefer.split(","):
        name, _, value = item.split(";", 1)[0].strip().partition("=")
        if name.strip().lower() == "return":
            found = _BY_VALUE.get(value.strip().strip('"').lower())
            if found is not None:
                return found
    return default
