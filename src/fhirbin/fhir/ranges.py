"""Byte ranges of native Binary reads: ``Range``, ``If-Range``, ``Content-Range`` and
``multipart/byteranges`` (RFC 9110 §14).

R4 binary.html#read leaves "advanced reads" such as byte ranges to the server (MAY). fhirbin
serves them on native reads only; the FHIR JSON form is always whole.

Decisions where the RFC leaves room:

* A ``Range`` that is absent, not in ``bytes``, or syntactically invalid is ignored: the
  whole representation is served (RFC 9110 §14.2: a server MAY ignore Range). The unit name
  is case-insensitive (§14.1); no whitespace is allowed around ``=``; list members may have
  whitespace around them and may be empty (§5.6.1).
* A range starting at or beyond the size is dropped; one ending beyond it is clipped. When
  none is left the answer is 416 with ``Content-Range: bytes */size`` (§14.1.1, §15.5.17).
* Abuse guard (§14.2 allows ignoring): more than 100 ranges, or ranges whose lengths add up to
  more than the size (only overlapping or repeated ranges can), make fhirbin serve the whole
  representation instead. Ranges are otherwise served as asked, in the order asked, without
  merging.
* A zero-length representation has no byte to address: any Range is ignored (200).
* ``If-Range`` with an entity tag uses the weak comparison, not RFC 9110 §13.1.5's strong one:
  fhirbin's ETags are weak (``W/"3"``, R4 http.html#versioning) only because FHIR says so; a
  version's content never changes, so the tag identifies the exact bytes. ``W/"3"`` and ``"3"``
  both name version 3. A date must equal Last-Modified to the second; fhirbin does not also
  require Last-Modified to be a "strong" date (one second older than the response's Date),
  for the same reason: a version's content never changes.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from fhirbin.errors import FhirbinError
from fhirbin.fhir.conditional import parse_http_date

__all__ = [
    "MAX_RANGES",
    "RangeNotSatisfiable",
    "content_range",
    "if_range_ok",
    "multipart_byteranges",
    "multipart_content_type",
    "new_boundary",
    "parse_range",
]

MAX_RANGES = 100
_SPEC_RE = re.compile(r"\s*(?:([0-9]+)-([0-9]*)|-([0-9]+))\s*")
_MAX_DIGITS = 30  # far beyond any size; keeps int() cheap and within its digit limit
_IF_RANGE_ETAG_RE = re.compile(r'(?:W/)?"([\x21\x23-\x7e\x80-\xff]*)"')


class RangeNotSatisfiable(FhirbinError):
    """416: no range of the ``Range`` header overlaps the representation (RFC 9110 §15.5.17),
    with ``Content-Range: bytes */size``."""

    status = 416
    code = "value"

    def __init__(self, size: int) -> None:
        super().__init__(
            f"None of the requested byte ranges overlaps the content, which is {size} bytes "
            "long (RFC 9110 §14.1.1).",
            expression="http.Range",
            headers={"Content-Range": f"bytes */{size}"},
        )
        self.size = size


def parse_range(header: str | None, size: int) -> list[tuple[int, int]] | None:
    """The ``(start, end_exclusive)`` ranges to serve, or None to serve the whole
    representation (see the module docstring for when). Raises RangeNotSatisfiable when the
    header is valid but no range overlaps the ``size`` bytes."""
    if header is None or size <= 0:
        return None
    unit, eq, range_set = header.partition("=")
    if not eq or unit.strip().lower() != "bytes" or unit != unit.strip():
        return None
    specs = [member for member in range_set.split(",") if member.strip()]
    if not specs or len(specs) > MAX_RANGES:
        return None
    ranges: list[tuple[int, int]] = []
    for spec in specs:
        m = _SPEC_RE.fullmatch(spec)
        if m is None or any(g is not None and len(g) > _MAX_DIGITS for g in m.groups()):
            return None
        first, last, suffix = m.groups()
        if suffix is not None:  # "-n": the last n bytes; "-0" is unsatisfiable
            length = int(suffix)
            if length > 0:
                ranges.append((max(0, size - length), size))
            continue
        start = int(first)
        if last:
            end = int(last) + 1
            if end <= start:  # last-pos < first-pos: invalid, so the whole header is
                return None
        else:
            end = size
        if start < size:
            ranges.append((start, min(end, size)))
    if not ranges:
        raise RangeNotSatisfiable(size)
    if sum(end - start for start, end in ranges) > size:
        return None
    return ranges


def if_range_ok(header: str | None, version: int, last_modified: datetime) -> bool:
    """Whether a Range may be honoured under ``If-Range`` (RFC 9110 §13.1.5): True without the
    header, when its entity tag names ``version`` (weak or strong, see the module docstring)
    or when its HTTP-date equals Last-Modified to the second; else False (serve it whole)."""
    if header is None:
        return True
    text = header.strip()
    if text.startswith(('"', "W/")):
        m = _IF_RANGE_ETAG_RE.fullmatch(text)
        return m is not None and m.group(1) == str(version)
    date = parse_http_date(text)
    if date is None:
        return False
    if last_modified.utcoffset() is None:
        raise ValueError("last_modified must be timezone-aware")
    return last_modified.astimezone(UTC).replace(microsecond=0) == date


def content_range(start: int, end_exclusive: int, size: int) -> str:
    """``Content-Range`` of a 206 part (RFC 9110 §14.4): ``bytes first-last/size``."""
    if not 0 <= start < end_exclusive <= size:
        raise ValueError(f"bad range {start}-{end_exclusive} of {size}")
    return f"bytes {start}-{end_exclusive - 1}/{size}"


def new_boundary() -> str:
    """A fresh multipart boundary: 32 random hex digits, which no content will contain by
    accident (RFC 2046 §5.1.1: 1-70 characters)."""
    return secrets.token_hex(16)


def multipart_content_type(boundary: str) -> str:
    """The ``Content-Type`` of a multi-range 206 (RFC 9110 §14.6)."""
    return f"multipart/byteranges; boundary={boundary}"


def multipart_byteranges(
    ranges: Sequence[tuple[int, int]], size: int, content_type: str, boundary: str
) -> tuple[list[bytes], bytes, int]:
    """The framing of a ``multipart/byteranges`` body (RFC 9110 §14.6, RFC 2046 §5.1.1).

    Returns the header block to send before each range's bytes (``--boundary``,
    ``Content-Type``, ``Content-Range``, blank line; every block but the first starts with the
    CRLF that ends the previous part's bytes), the closing delimiter
    (``\\r\\n--boundary--\\r\\n``) and the exact Content-Length of the whole body.
    """
    if any(c in content_type for c in "\r\n") or not 0 < len(boundary) <= 70:
        raise ValueError("bad content type or boundary for multipart/byteranges")
    heads: list[bytes] = []
    for i, (start, end) in enumerate(ranges):
        head = (
            ("\r\n" if i else "") + f"--{boundary}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Range: {content_range(start, end, size)}\r\n\r\n"
        )
        heads.append(head.encode("latin-1"))
    closing = f"\r\n--{boundary}--\r\n".encode("latin-1")
    length = sum(map(len, heads)) + sum(end - start for start, end in ranges) + len(closing)
    return heads, closing, length
