"""The ``Prefer`` request header (RFC 7240) and the two preferences FHIR gives it.

One parser, :func:`parse_prefer`, reads the whole header; :func:`prefer_return` reads
``return=`` on create and update (R4 http.html#prefer) and :func:`prefer_handling` reads
``handling=`` on search (R4 search.html#errors,
docs/decisions.md#unknown-search-parameters).

RFC 7240 §2 grammar, as implemented::

    Prefer     = 1#preference
    preference = token [ BWS "=" BWS word ] *( OWS ";" [ OWS parameter ] )
    parameter  = token [ BWS "=" BWS word ]
    word       = token / quoted-string

Preference names are case-insensitive (RFC 7240 §2); the values FHIR defines are compared
case-insensitively too, as fhirbin always has. Commas and semicolons inside a quoted string
do not split. Malformed list members are skipped: a server ignores what it does not
understand (RFC 7240 §2). When a preference appears more than once only its first instance
counts (RFC 7240 §2), even when that instance's value is one fhirbin does not know.

Without a ``return`` preference (docs/decisions.md#prefer-on-writes), native uploads get
``SUBSET`` (the Binary's id and meta without its data) and FHIR uploads get
``representation``; the caller passes that default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "Preference",
    "Return",
    "parse_prefer",
    "prefer_handling",
    "prefer_return",
]


class Return(Enum):
    MINIMAL = "minimal"
    REPRESENTATION = "representation"
    OPERATION_OUTCOME = "OperationOutcome"
    #: No client asks for this one: the answer to a native upload without ``return=``, the
    #: FHIR JSON Binary with id and meta and without ``data``, tagged SUBSETTED.
    SUBSET = "subset"


_BY_VALUE = {r.value.lower(): r for r in Return if r is not Return.SUBSET}

# RFC 9110 §5.6.2 token characters.
_TCHARS = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
# One list member, or one ;-parameter: token [ BWS "=" BWS word ]. The unquoted word may not
# contain the delimiters; anything else that is not a token is tolerated and kept verbatim.
_PAIR_RE = re.compile(rf"\s*({_TCHARS})\s*(?:=\s*({_QUOTED}|[^\s;,\"]*))?\s*\Z")


@dataclass(frozen=True)
class Preference:
    """One preference: its value ("" when it has none) and its ``;`` parameters, with
    lowercased names and unquoted values."""

    value: str
    parameters: tuple[tuple[str, str], ...] = ()


def parse_prefer(header: str | None) -> dict[str, Preference]:
    """The preferences of a ``Prefer`` header by lowercased name; the first of a name wins.

    Several ``Prefer`` header lines are one comma-separated list (RFC 9110 §5.3): join
    them with ``", "`` before calling.
    """
    preferences: dict[str, Preference] = {}
    if not header:
        return preferences
    for member in _split(header, ","):
        parts = _split(member, ";")
        head = _pair(parts[0])
        if head is None:  # empty list member or not a preference: ignored
            continue
        name, value = head
        parameters = tuple(p for p in (_pair(part) for part in parts[1:]) if p is not None)
        preferences.setdefault(name, Preference(value, parameters))
    return preferences


def prefer_return(prefer: str | None, default: Return) -> Return:
    """The ``return`` preference (R4 http.html#prefer), or ``default`` when there is none or
    its (first) value is not one of ``minimal``, ``representation``, ``OperationOutcome``."""
    found = parse_prefer(prefer).get("return")
    if found is None:
        return default
    return _BY_VALUE.get(found.value.lower(), default)


def prefer_handling(prefer: str | None) -> str | None:
    """``"strict"`` or ``"lenient"`` from ``Prefer: handling=...`` (R4 search.html#errors),
    else None (also for an unknown value). ``return=minimal, handling=strict`` carries both;
    in ``return=minimal; handling=strict`` ``handling`` is a parameter of ``return``, not a
    preference, and does not count."""
    found = parse_prefer(prefer).get("handling")
    if found is None:
        return None
    value = found.value.lower()
    return value if value in ("strict", "lenient") else None


def _split(text: str, delimiter: str) -> list[str]:
    """``text`` split at ``delimiter`` (``,`` or ``;``) outside quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for c in text:
        if escaped:
            escaped = False
        elif quoted and c == "\\":
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == delimiter and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(c)
    parts.append("".join(current))
    return parts


def _pair(text: str) -> tuple[str, str] | None:
    m = _PAIR_RE.match(text)
    if m is None:
        return None
    raw = m.group(2) or ""
    if raw.startswith('"'):
        raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
    return m.group(1).lower(), raw
