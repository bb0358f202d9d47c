"""Search on Binary: which parameters a request applies, and the ``self`` link that says so.

Owns the subset of R4 search.html that fhirbin implements today: ``_id`` with comma-OR and
repeat-AND (search.html#combining), value escaping (#escaping), empty values (#errors),
modifiers (#modifiers), unknown parameters and ``Prefer: handling`` (#errors, D4), and the
``self`` link that reports the parameters actually used (#conformance). Pure: the HTTP layer
passes the decoded query (and form body) pairs in and runs the search it gets back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from fhirbin.errors import BadRequest
from fhirbin.fhir.ids import is_valid_id

# R4 http.html#parameters: format controls, not search parameters. They never filter, are
# never reported in the self link and are never "unknown".
FORMAT_PARAMETERS = frozenset({"_format", "_pretty"})

# search.html#escaping: after %-decoding, "\," "\$" "\|" "\\" stand for the character itself.
_ESCAPABLE = frozenset(",$|\\")
# RFC 7240 §2: preference = token [ BWS "=" BWS word ] *( OWS ";" [ OWS parameter ] )
_PREFERENCE_RE = re.compile(r'\s*([^\s=;,]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^\s;,]*))?')


@dataclass(frozen=True)
class SearchRequest:
    """What a search asks for.

    ``ids`` is an AND of OR-sets of ids, or None when no ``_id`` filter applies. An OR-set
    may be empty: its values were all invalid ids, which match nothing (the search then has
    no results; it is not an error, search.html#errors). ``used`` lists the ``(name, raw
    value)`` pairs applied, in request order, for the self link.
    """

    ids: list[frozenset[str]] | None
    used: list[tuple[str, str]]


def prefer_handling(prefer: str | None) -> str | None:
    """``strict`` or ``lenient`` from a ``Prefer: handling=...`` header (search.html#errors),
    else None. Several preferences may share the header (``return=minimal, handling=strict``);
    the first ``handling`` wins (RFC 7240 §2)."""
    if not prefer:
        return None
    for item in prefer.split(","):
        m = _PREFERENCE_RE.match(item)
        if m is None or m.group(1).lower() != "handling":
            continue
        value = (m.group(2) or "").strip('"').lower()
        return value if value in ("strict", "lenient") else None
    return None


def parse_binary_search(params: Sequence[tuple[str, str]], strict: bool) -> SearchRequest:
    """The search the ``(name, value)`` pairs ask for.

    Names are case sensitive (search.html#conformance). Empty values are ignored whatever
    the name (search.html#errors). ``_id`` with a modifier is a 400 (search.html#modifiers:
    unsupported modifiers MUST be rejected). Other names are ignored, or a 400 when
    ``strict`` (``Prefer: handling=strict``); ``_format`` and ``_pretty`` are never either.
    """
    ids: list[frozenset[str]] = []
    used: list[tuple[str, str]] = []
    for name, value in params:
        if name in FORMAT_PARAMETERS or value == "":
            continue
        base, colon, modifier = name.partition(":")
        if base == "_id":
            if colon:
                raise BadRequest(
                    f"The modifier ':{modifier[:50]}' is not supported on _id: it matches "
                    "logical ids exactly and case-sensitively already (R4 search.html#id).",
                    expression=f"http.{name}",
                    code="not-supported",
                )
            # Values that are not ids can match no resource: they are dropped, and an OR-set
            # left empty matches nothing (a logically unsatisfiable value, search.html#errors).
            ids.append(frozenset(v for v in split_values(value, name) if is_valid_id(v)))
            used.append((name, value))
        elif strict:
            raise BadRequest(
                f"Unknown or unsupported search parameter {name[:100]!r} "
                "(the request asked for Prefer: handling=strict). Binary supports _id.",
                expression=f"http.{name}",
                code="not-supported",
            )
    return SearchRequest(ids=ids or None, used=used)


def split_values(value: str, name: str = "_id") -> list[str]:
    """A parameter value split on unescaped commas (OR, search.html#combining), each value
    unescaped (search.html#escaping). A backslash before any other character, or at the
    end, is a 400."""
    if "\\" not in value:  # the usual case
        return value.split(",")
    values: list[str] = []
    current: list[str] = []
    chars = iter(value)
    for c in chars:
        if c == ",":
            values.append("".join(current))
            current = []
        elif c == "\\":
            escaped = next(chars, "")
            if escaped not in _ESCAPABLE:
                raise BadRequest(
                    f"Invalid escape in {name} value {value[:100]!r}: a backslash must be "
                    r"followed by one of , $ | \ (R4 search.html#escaping).",
                    expression=f"http.{name}",
                )
            current.append(escaped)
        else:
            current.append(c)
    values.append("".join(current))
    return values


def self_link(base_url: str, used: Sequence[tuple[str, str]]) -> str:
    """The searchset's ``self`` link: the type URL with exactly the parameters used
    (search.html#conformance), percent-encoded as UTF-8 (R4 http.html#root). Commas stay
    literal: they separate OR values and RFC 3986 allows them in a query."""
    url = f"{base_url}/Binary"
    if not used:
        return url
    query = "&".join(f"{quote(n, safe=':')}={quote(v, safe=',')}" for n, v in used)
    return f"{url}?{query}"
