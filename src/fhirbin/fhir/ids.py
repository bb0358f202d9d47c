"""Resource ids and version ids: what a valid one looks like.

Owns the R4 ``id`` datatype rule (datatypes.html#id), fhirbin's server-assigned ids
(docs/decisions.md#ids) and its version ids (docs/decisions.md#version-ids).
Ids are case sensitive (R4 http.html#root, resource.html#id; the R4 ``id`` StructureDefinition
text that says otherwise is wrong), so nothing here ever folds case.
"""

from __future__ import annotations

import os
import re
import time
import uuid

from fhirbin.errors import BadRequest

# R4 datatypes.html#id gives the unanchored regex; \A...\Z (not ^...$, which accepts a trailing
# newline) anchors it.
ID_RE = re.compile(r"\A[A-Za-z0-9\-.]{1,64}\Z")
_BAD_ID_CHAR_RE = re.compile(r"[^A-Za-z0-9\-.]")
MAX_ID_LENGTH = 64

# docs/decisions.md#version-ids: fhirbin's version ids are the decimal numbers 1, 2, ... with
# no leading zero, so that each version has exactly one spelling ("007" is a valid FHIR id but
# names no version here).
_VERSION_NUMBER_RE = re.compile(r"\A[1-9][0-9]{0,17}\Z")


def is_valid_id(s: str) -> bool:
    """True if ``s`` is a syntactically valid FHIR id (1-64 of ``A-Z a-z 0-9 - .``)."""
    return ID_RE.match(s) is not None


def check_id(s: str, expression: str = "id") -> str:
    """Return ``s`` if it is a valid FHIR id, else raise BadRequest saying what is wrong
    (docs/decisions.md#malformed-ids)."""
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
    ``Binary/..`` into another URL, so such a resource could never be read back
    (docs/decisions.md#malformed-ids).
    """
    check_id(s, expression)
    if s in (".", ".."):
        raise BadRequest(
            f"Invalid id {s!r}: '.' and '..' are URL dot-segments and cannot be used as ids.",
            expression=expression,
        )
    return s


def new_id() -> str:
    """A server-assigned id: a random lowercase UUID (docs/decisions.md#ids; R4
    datatypes.html#id asks for lowercase UUIDs)."""
    return str(uuid.uuid4())


class TimeOrderedIds:
    """Ids for records made on every request (audit records, request ids): UUIDv7-shaped
    (RFC 9562 §5.7), so a lowercase UUID that is a valid FHIR id like :func:`new_id`'s.

    Cheaper than ``uuid4`` (no system call, no UUID object: measured at 5% of a small read's
    time for two ids per request) and ordered by time, so inserting them into an index appends
    rather than scatters. Unique across processes and machines through 42 random bits per
    generator plus a 32-bit counter (RFC 9562 §6.2 method 2 puts a counter in rand_a/rand_b).
    """

    def __init__(self) -> None:
        seed = int.from_bytes(os.urandom(10), "big")
        self._node = seed & ((1 << 42) - 1)
        self._count = seed >> 48  # 32 random bits to start from

    def next(self) -> str:
        count = self._count = (self._count + 1) & 0xFFFFFFFF
        ms = (time.time_ns() // 1_000_000) & 0xFFFFFFFFFFFF
        rand_b = (1 << 63) | ((count & 0xFFFFF) << 42) | self._node  # variant bits 10
        return (
            f"{ms >> 16:08x}-{ms & 0xFFFF:04x}-7{count >> 20:03x}-"
            f"{rand_b >> 48:04x}-{rand_b & 0xFFFFFFFFFFFF:012x}"
        )


def is_valid_version_id(s: str) -> bool:
    """True if ``s`` is syntactically a version id: R4 resource.html#meta gives
    ``meta.versionId`` the ``id`` format. A valid one may still name no fhirbin version; see
    :func:`version_number`."""
    return ID_RE.match(s) is not None


def version_number(s: str) -> int | None:
    """The version number a version id names ("1", "2", ...:
    docs/decisions.md#version-ids), or None if it names none."""
    if _VERSION_NUMBER_RE.match(s) is None:
        return None
    return int(s)
