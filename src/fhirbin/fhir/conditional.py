"""Conditional requests: ``If-None-Match``, ``If-Modified-Since`` and ``If-Match``.

Owns RFC 9110 §13 as FHIR uses it: conditional read (R4 http.html#cread, 304 Not Modified)
and optimistic locking on update and delete (R4 http.html#concurrency, 412 Precondition
Failed). fhirbin's ETag of a version is ``W/"<versionId>"`` (R4 http.html#versioning,
docs/decisions.md#version-ids);
its Last-Modified is ``meta.lastUpdated`` at one-second precision (HTTP dates have none finer).

Decisions where the specs leave room:

* Entity tags may also be sent unquoted (``3``, ``W/3``) and with a lower-case ``w/``: some
  clients do, the meaning is unambiguous, and the opaque value is compared the same way.
  Anything else malformed (an unclosed quote, ``*`` inside a list, a stray character) is a 400
  naming the header.
* An empty ``If-None-Match`` / ``If-Match`` is an empty list (RFC 9110 ``#entity-tag`` allows
  it): it matches nothing, so If-None-Match does not say "not modified" and If-Match fails.
* ``If-Match`` uses the weak comparison, like If-None-Match, unlike RFC 9110 §13.1.1 (strong
  comparison): FHIR's ETags are weak by definition and R4 http.html#concurrency has clients
  send them back in ``If-Match`` (``If-Match: W/"23"``). ``"3"`` and ``W/"3"`` both match
  version 3.
* An invalid ``If-Modified-Since`` is ignored (RFC 9110 §13.1.3); so is a list of dates.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from fhirbin.errors import BadRequest

__all__ = [
    "if_match_ok",
    "if_modified_since",
    "if_none_match",
    "not_modified",
    "parse_entity_tags",
    "parse_http_date",
]

# RFC 9110 §8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE, etagc = %x21 / %x23-7E /
# obs-text; plus fhirbin's tolerance of an unquoted value (no quote, comma or whitespace).
_ETAG_RE = re.compile(
    r'\s*(W/|w/)?(?:"([\x21\x23-\x7e\x80-\xff]*)"|([\x21\x23-\x2b\x2d-\x7e]+))\s*'
)

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH = "(?P<mon>" + "|".join(_MONTHS) + ")"
_TIME = r"(?P<h>[0-9]{2}):(?P<mi>[0-9]{2}):(?P<s>[0-9]{2})"
# RFC 9110 §5.6.7: IMF-fixdate, and the obsolete RFC 850 and asctime forms recipients accept.
_IMF_RE = re.compile(
    rf"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (?P<d>[0-9]{{2}}) {_MONTH} (?P<y>[0-9]{{4}}) {_TIME} GMT"
)
_RFC850_RE = re.compile(
    r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
    rf"(?P<d>[0-9]{{2}})-{_MONTH}-(?P<y>[0-9]{{2}}) {_TIME} GMT"
)
_ASCTIME_RE = re.compile(
    rf"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) {_MONTH} (?P<d>[ 0-9][0-9]) {_TIME} (?P<y>[0-9]{{4}})"
)


def parse_entity_tags(
    header: str, *, field: str = "If-None-Match"
) -> list[tuple[bool, str]] | None:
    """The entity tags of a conditional header as ``(weak, opaque)``, or None for ``*``.

    ``field`` names the header in the 400 raised for a malformed value.
    """
    if header.strip() == "*":
        return None
    tags: list[tuple[bool, str]] = []
    for member in _split_list(header):
        if not member.strip():  # RFC 9110 §5.6.1.2: empty list elements are ignored
            continue
        m = _ETAG_RE.fullmatch(member)
        if m is None or m.group(3) == "*":  # "*" stands alone (RFC 9110 §13.1.1)
            raise BadRequest(
                f"Malformed {field} {header[:100]!r}: expected * or a list of entity tags "
                'such as W/"3" (RFC 9110 §8.8.3, §13.1).',
                expression=f"http.{field}",
            )
        opaque = m.group(2) if m.group(2) is not None else m.group(3)
        tags.append((m.group(1) is not None, opaque))
    return tags


def if_none_match(header: str | None, version: int) -> bool:
    """True when ``If-None-Match`` says the current ``version`` is not modified (RFC 9110
    §13.1.2, weak comparison): ``*`` (the resource exists) or a tag naming ``version``."""
    if header is None:
        return False
    tags = parse_entity_tags(header, field="If-None-Match")
    return tags is None or any(opaque == str(version) for _, opaque in tags)


def if_modified_since(header: str | None, last_modified: datetime) -> bool:
    """True when ``If-Modified-Since`` says the resource is not modified: Last-Modified, cut
    to the second, is at or before the date given (RFC 9110 §13.1.3). An absent or invalid
    date is False (the condition is ignored)."""
    if header is None:
        return False
    since = parse_http_date(header)
    if since is None:
        return False
    return _seconds(last_modified) <= since


def not_modified(
    if_none_match_header: str | None,
    if_modified_since_header: str | None,
    version: int,
    last_modified: datetime,
) -> bool:
    """Whether a GET/HEAD gets 304 (R4 http.html#cread): If-None-Match decides when present,
    If-Modified-Since only when it is absent (RFC 9110 §13.2.2 steps 3-4)."""
    if if_none_match_header is not None:
        return if_none_match(if_none_match_header, version)
    return if_modified_since(if_modified_since_header, last_modified)


def if_match_ok(header: str | None, version: int | None) -> bool:
    """Whether an update or delete may proceed under ``If-Match`` (R4 http.html#concurrency,
    else 412). ``version`` is the current version, None when the resource does not exist (or
    is deleted). No header: True. ``*``: True iff it exists. Otherwise True iff a tag's
    opaque value is ``str(version)``, weak or strong (see the module docstring)."""
    if header is None:
        return True
    tags = parse_entity_tags(header, field="If-Match")
    if version is None:
        return False
    return tags is None or any(opaque == str(version) for _, opaque in tags)


def parse_http_date(value: str) -> datetime | None:
    """An RFC 9110 §5.6.7 HTTP-date (IMF-fixdate, RFC 850 or asctime) as a UTC datetime, or
    None when it is not exactly one valid HTTP-date. A two-digit RFC 850 year more than 50
    years in the future is taken as the most recent past year with those digits."""
    text = value.strip()
    m = _IMF_RE.fullmatch(text) or _ASCTIME_RE.fullmatch(text)
    year: int | None = None
    if m is None:
        m = _RFC850_RE.fullmatch(text)
        if m is None:
            return None
        now = datetime.now(UTC).year
        year = now - now % 100 + int(m["y"])
        if year > now + 50:
            year -= 100
    try:
        return datetime(
            year if year is not None else int(m["y"]),
            _MONTHS.index(m["mon"]) + 1,
            int(m["d"]),
            int(m["h"]),
            int(m["mi"]),
            int(m["s"]),
            tzinfo=UTC,
        )
    except ValueError:  # 31 Feb, 25:00, ...
        return None


def _seconds(dt: datetime) -> datetime:
    if dt.utcoffset() is None:
        raise ValueError("last_modified must be timezone-aware")
    return dt.astimezone(UTC).replace(microsecond=0)


def _split_list(header: str) -> list[str]:
    """A comma-separated field value split outside quoted strings (entity tags may hold
    commas: etagc includes %x2C)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for c in header:
        if c == '"':
            quoted = not quoted
        elif c == "," and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(c)
    parts.append("".join(current))
    return parts
