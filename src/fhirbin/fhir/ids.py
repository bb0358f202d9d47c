"""Resource ids and version ids: what a valid one looks like.

Owns the R4 ``id`` datatype rule (datatypes.html#id), fhirbin's server-assigned ids (D13) and
its version ids (D12).
Ids are case sensitive (R4 http.html#root, resource.html#id; the R4 ``id`` StructureDefinition
text that says otherwise is wrong), so nothing here ever folds case.
"""

from __future__ import annotations

import re
import uuid

from fhirbin.errors import BadRequest

# R4 datatypes.html#id gives the unanchored regex; \A...\Z (not ^...$, which accepts a trailing
# newline) anchors it.
ID_RE = re.compile(r"\A[A-Za-z0-9\-.]{1,64}\Z")
_BAD_ID_CHAR_RE = re.compile(r"[^A-Za-z0-9\-.]")
MAX_ID_LENGTH = 64

# D12: fhirbin's version ids are the decimal numbers 1, 2, ... with no leading zero, so that
# each version has exactly one spelling ("007" is a valid FHIR id but names no version here).
_VERSION_NUMBER_RE = re.compile(r"\A[1-9][0-9]{0,17}\Z")


def is_valid_id(s: str) -> bool:
    """True if ``s`` is a syntactically valid FHIR id (1-64 of ``A-Z a-z 0-9 - .``)."""
    return ID_RE.match(s) is not None


def check_id(s: str, expression: str = "id") -> str:
    """Return ``s`` if it is a valid FHIR id, else raise BadRequest saying what is wrong (D3)."""
    if ID_RE.match(s) is not None:
        return s
    if not s:
        problem = "is empty"
    elif len(s) > MAX_ID_LENGTH:
        problem = f"is {len(s)} characters long; the maximum is {MAX_ID_LENGTH}"
    else:
        bad = sorted(set(_BAD_ID_CHAR_RE.findall(s)))
        shown = ", ".join(ascii(c) for c in bad[:5])
        problem = f"contains characters that are not allowed ({shown})"
    raise BadRequest(
        f"Invalid id: it {problem}. FHIR ids are 1 to 64 characters from A-Z, a-z, 0-9, "
        "'-' and '.' (R4 datatypes.html#id).",
        expression=expression,
    )


def check_writable_id(s: str, expression: str = "id") -> str:
    """Like :func:`check_id`, and also refuse ``.`` and ``..`` as the id of a new resource.

    Both match the id regex, but URL dot-segment normalisation (RFC 3986 §5.2.4) would turn
    ``Binary/..`` into another URL, so such a resource could never be read back (D3).
    """
    check_id(s, expression)
    if s in (".", ".."):
        raise BadRequest(
            f"Invalid id {s!r}: '.' and '..' are URL dot-segments and cannot be used as ids.",
            expression=expression,
        )
    return s


def new_id() -> str:
    """A server-assigned id: a random lowercase UUID (D13; R4 datatypes.html#id asks for
    lowercase UUIDs)."""
    return str(uuid.uuid4())


def is_valid_version_id(s: str) -> bool:
    """True if ``s`` is syntactically a version id: R4 resource.html#meta gives
    ``meta.versionId`` the ``id`` format. A valid one may still name no fhirbin version; see
    :func:`version_number`."""
    return ID_RE.match(s) is not None


def version_number(s: str) -> int | None:
    """The version number a version id names (D12: "1", "2", ...), or None if it names none."""
    if _VERSION_NUMBER_RE.match(s) is None:
        return None
    return int(s)
