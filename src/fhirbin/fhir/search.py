"""Search and history on Binary: which parameters a request applies, and the ``self`` link.

Owns the subset of R4 search.html that fhirbin implements: ``_id`` with comma-OR and
repeat-AND (search.html#combining), value escaping (#escaping), empty values (#errors),
modifiers (#modifiers), ``_lastUpdated`` (#lastUpdated, #date, #prefix), ``_count``
(#count), ``_sort`` (#sort), ``_summary`` (#summary), ``_elements`` (#elements), ``_total``
(#total), the paging cursor ``_page`` (http.html#paging), unknown parameters and
``Prefer: handling`` (#errors,
docs/decisions.md#unknown-search-parameters), the ``self`` link that reports the parameters actually
used (#conformance), and the parameters of history (http.html#history). Pure: the HTTP layer
passes the decoded query (and form body) pairs in and runs the search it gets back.

Decisions where the spec leaves room:

* ``_lastUpdated`` comma lists (OR) are refused with a 400: a search is an AND of
  :class:`LastUpdated` conditions, which cannot express an OR. Repeats AND.
* ``ap`` widens the value's range by 10% of the gap between now and the range on each side
  (search.html#prefix: "10% of the gap between now and the date"); the gap is measured to the
  nearer end of the range, and is 0 (``ap`` = ``eq``) when now lies inside it.
* The result parameters ``_count``, ``_sort``, ``_summary``, ``_elements``, ``_total`` and
  ``_page`` may appear at most once (repeats are ambiguous: 400), modifiers on them are a 400,
  and an invalid value is a 400 whatever ``Prefer: handling`` says (only unknown parameters
  are subject to docs/decisions.md#unknown-search-parameters).
* ``_count`` above ``max_count`` is capped (search.html#count lets the server return fewer);
  ``_count=0`` asks for the total only.
* ``_sort``: only ``_lastUpdated`` (ascending, the default) and ``-_lastUpdated``.
* ``_summary=text`` is applied as ``true`` (Binary has no narrative, so the summary is what is
  left) and ``_summary=data`` as ``false`` (there is no text to drop); ``used`` says so.
* ``_elements`` names must be Binary's top-level elements; empty names are dropped.
* History: ``_at`` and ``_list`` are not supported and are treated as unknown parameters
  (ignored, or a 400 under ``Prefer: handling=strict``), like any other unknown parameter
  (docs/decisions.md#unknown-search-parameters).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from fhirbin.errors import BadRequest
from fhirbin.fhir.dates import DateRange, parse_date, parse_instant
from fhirbin.fhir.ids import is_valid_id
from fhirbin.fhir.paging import query_string
from fhirbin.fhir.prefer import prefer_handling

__all__ = [
    "BINARY_ELEMENTS",
    "FORMAT_PARAMETERS",
    "HistoryRequest",
    "LastUpdated",
    "SearchRequest",
    "date_condition",
    "parse_binary_search",
    "parse_history_params",
    "prefer_handling",
    "read_subset",
    "self_link",
    "split_values",
]

# R4 http.html#parameters: format controls, not search parameters. They never filter, are
# never reported in the self link and are never "unknown".
FORMAT_PARAMETERS = frozenset({"_format", "_pretty"})

# R4 binary.html#resource: the top-level elements of a Binary (Resource's, then its own).
BINARY_ELEMENTS = (
    "id",
    "meta",
    "implicitRules",
    "language",
    "contentType",
    "securityContext",
    "data",
)

# search.html#escaping: after %-decoding, "\," "\$" "\|" "\\" stand for the character itself.
_ESCAPABLE = frozenset(",$|\\")
# search.html#prefix
_PREFIXES = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"})
_SUMMARY = {"true": "true", "false": "false", "count": "count", "text": "true", "data": "false"}
_TOTAL = frozenset({"none", "estimate", "accurate"})
_SORT = {"_lastUpdated": False, "-_lastUpdated": True}
_SINGLE = frozenset({"_count", "_sort", "_summary", "_elements", "_total", "_page"})
_SEARCH_NAMES = frozenset({"_id", "_lastUpdated"} | _SINGLE)
_HISTORY_NAMES = frozenset({"_count", "_since", "_page"})
_MAX_INT_DIGITS = 18
_SUPPORTED_SEARCH = "_id, _lastUpdated, _count, _sort, _summary, _elements, _total"


@dataclass(frozen=True)
class LastUpdated:
    """One ``_lastUpdated`` value as a condition on a version's ``meta.lastUpdated`` t (µs).

    ``inside``: ``(lower_us is None or lower_us <= t) and (upper_us is None or t < upper_us)``.
    Not ``inside`` (``ne``): the negation of that. A None bound is unbounded.
    """

    lower_us: int | None
    upper_us: int | None
    inside: bool = True

    def matches(self, t_us: int) -> bool:
        within = (self.lower_us is None or self.lower_us <= t_us) and (
            self.upper_us is None or t_us < self.upper_us
        )
        return within if self.inside else not within


@dataclass(frozen=True)
class SearchRequest:
    """What a search asks for.

    ``ids`` is an AND of OR-sets of ids, or None when no ``_id`` filter applies. An OR-set
    may be empty: its values were all invalid ids, which match nothing (the search then has
    no results; it is not an error, search.html#errors). ``updated`` is an AND of
    ``_lastUpdated`` conditions. ``count`` is the page size (0: total only); ``descending``
    the ``_sort`` order by lastUpdated; ``summary`` one of ``true``/``false``/``count`` or
    None; ``elements`` the ``_elements`` names or None; ``total`` the ``_total`` value or
    None; ``page`` the raw ``_page`` cursor (decode with
    :func:`fhirbin.fhir.paging.decode_cursor`) or None. ``used`` lists the ``(name, value)``
    pairs applied, in request order and normalised to what was applied, for the self link;
    ``_page`` is never in it.
    """

    ids: list[frozenset[str]] | None
    used: list[tuple[str, str]]
    updated: tuple[LastUpdated, ...] = ()
    count: int = 20
    descending: bool = False
    summary: str | None = None
    elements: frozenset[str] | None = None
    total: str | None = None
    page: str | None = None


@dataclass(frozen=True)
class HistoryRequest:
    """What a history interaction asks for (R4 http.html#history): the page size, the
    ``_since`` instant (versions with lastUpdated >= it) in µs or None, the raw ``_page``
    cursor, and the parameters applied for the self link."""

    count: int
    since_us: int | None
    page: str | None
    used: list[tuple[str, str]]


def parse_binary_search(
    params: Sequence[tuple[str, str]],
    strict: bool,
    *,
    now_us: int | None = None,
    default_count: int = 20,
    max_count: int = 1000,
) -> SearchRequest:
    """The search the ``(name, value)`` pairs ask for.

    Names are case sensitive (search.html#conformance). Empty values are ignored whatever
    the name (search.html#errors). A modifier on a supported parameter is a 400
    (search.html#modifiers: unsupported modifiers MUST be rejected). Other names are ignored,
    or a 400 when ``strict`` (``Prefer: handling=strict``); ``_format`` and ``_pretty`` are
    never either. ``now_us`` (default: the clock) anchors the ``ap`` prefix.
    """
    ids: list[frozenset[str]] = []
    updated: list[LastUpdated] = []
    used: list[tuple[str, str]] = []
    count = min(default_count, max_count)
    descending = False
    summary: str | None = None
    elements: frozenset[str] | None = None
    total: str | None = None
    page: str | None = None
    seen: set[str] = set()
    for name, value in params:
        if name in FORMAT_PARAMETERS or value == "":
            continue
        base, colon, modifier = name.partition(":")
        if base not in _SEARCH_NAMES:
            if strict:
                raise _unknown(name, _SUPPORTED_SEARCH)
            continue
        if colon:
            raise _modifier(name, base, modifier)
        if base in _SINGLE:
            _once(name, seen)
        if name == "_id":
            # Values that are not ids can match no resource: they are dropped, and an OR-set
            # left empty matches nothing (a logically unsatisfiable value, search.html#errors).
            ids.append(frozenset(v for v in split_values(value, name) if is_valid_id(v)))
            used.append((name, value))
        elif name == "_lastUpdated":
            condition, applied = _last_updated(value, now_us)
            updated.append(condition)
            used.append((name, applied))
        elif name == "_count":
            count = _count(value, max_count)
            used.append((name, str(count)))
        elif name == "_sort":
            if value not in _SORT:
                raise BadRequest(
                    f"Unsupported _sort {value[:100]!r}: Binary sorts by _lastUpdated "
                    "(ascending) or -_lastUpdated (descending) only (R4 search.html#sort).",
                    expression="http._sort",
                    code="not-supported",
                )
            descending = _SORT[value]
            used.append((name, value))
        elif name == "_summary":
            if value not in _SUMMARY:
                raise BadRequest(
                    f"Invalid _summary {value[:100]!r}: expected true, false, count, text or "
                    "data (R4 search.html#summary).",
                    expression="http._summary",
                )
            summary = _SUMMARY[value]
            used.append((name, summary))
        elif name == "_elements":
            names = _elements(value)
            if names:
                elements = frozenset(names)
                used.append((name, ",".join(names)))
        elif name == "_total":
            if value not in _TOTAL:
                raise BadRequest(
                    f"Invalid _total {value[:100]!r}: expected none, estimate or accurate "
                    "(R4 search.html#total).",
                    expression="http._total",
                )
            total = value
            used.append((name, value))
        else:  # _page: the paging cursor, not a search parameter (never in ``used``)
            page = value
    return SearchRequest(
        ids=ids or None,
        used=used,
        updated=tuple(updated),
        count=count,
        descending=descending,
        summary=summary,
        elements=elements,
        total=total,
        page=page,
    )


def parse_history_params(
    params: Sequence[tuple[str, str]],
    *,
    strict: bool,
    default_count: int = 20,
    max_count: int = 1000,
) -> HistoryRequest:
    """The history the ``(name, value)`` pairs ask for (R4 http.html#history).

    ``_count`` as for search; ``_since`` an instant with seconds and a timezone; ``_page`` the
    cursor. Each at most once (http.html#history), else 400. ``_at``, ``_list`` and other names
    are unknown: ignored, or a 400 when ``strict``. Empty values are ignored.
    """
    count = min(default_count, max_count)
    since_us: int | None = None
    page: str | None = None
    used: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, value in params:
        if name in FORMAT_PARAMETERS or value == "":
            continue
        base, colon, modifier = name.partition(":")
        if base not in _HISTORY_NAMES:
            if strict:
                raise _unknown(name, "_count, _since (history)")
            continue
        if colon:
            raise _modifier(name, base, modifier)
        _once(name, seen)
        if name == "_count":
            count = _count(value, max_count)
            used.append((name, str(count)))
        elif name == "_since":
            since_us = parse_instant(value, expression="http._since")
            used.append((name, parse_date(value, expression="http._since").value))
        else:
            page = value
    return HistoryRequest(count=count, since_us=since_us, page=page, used=used)


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
    literal: they separate OR values and RFC 3986 allows them in a query. (With paging, use
    :func:`fhirbin.fhir.paging.page_links`, which encodes the same way.)"""
    url = f"{base_url}/Binary"
    if not used:
        return url
    return f"{url}?{query_string(used)}"


def _last_updated(value: str, now_us: int | None) -> tuple[LastUpdated, str]:
    """One ``_lastUpdated`` value as a condition, and its spelling as applied."""
    return date_condition(value, now_us, name="_lastUpdated")


def date_condition(value: str, now_us: int | None, *, name: str) -> tuple[LastUpdated, str]:
    """One value of the date parameter ``name`` (``_lastUpdated``, AuditEvent's ``date``) as a
    condition on a point in time, and its spelling as applied: prefix rules of
    search.html#prefix, dates of search.html#date; an OR list is a 400 (not supported)."""
    values = [v for v in split_values(value, name) if v]
    if len(values) != 1:
        raise BadRequest(
            f"{name} {value[:100]!r} lists several values: OR on {name} is not "
            "supported; repeat the parameter to AND conditions (R4 search.html#combining).",
            expression=f"http.{name}",
            code="not-supported",
        )
    text = values[0]
    prefix = "eq"
    if text[:2].isalpha():
        prefix, text = text[:2], text[2:]
        if prefix not in _PREFIXES:
            raise BadRequest(
                f"Unknown prefix {prefix!r} in {name} {value[:100]!r}: expected one of "
                "eq, ne, gt, lt, ge, le, sa, eb, ap (R4 search.html#prefix).",
                expression=f"http.{name}",
            )
        applied_prefix = prefix
    else:
        applied_prefix = ""
    r = parse_date(text, expression=f"http.{name}")
    return _condition(prefix, r, now_us), applied_prefix + r.value


def _condition(prefix: str, r: DateRange, now_us: int | None) -> LastUpdated:
    """search.html#prefix for a point in time t against the value's range [L, U)."""
    lower, upper = r.lower_us, r.upper_us
    if prefix == "eq":
        return LastUpdated(lower, upper)
    if prefix == "ne":
        return LastUpdated(lower, upper, inside=False)
    if prefix in ("gt", "sa"):  # t after the whole range
        return LastUpdated(upper, None)
    if prefix in ("lt", "eb"):  # t before the whole range
        return LastUpdated(None, lower)
    if prefix == "ge":
        return LastUpdated(lower, None)
    if prefix == "le":
        return LastUpdated(None, upper)
    # ap: widened by 10% of the gap between now and the range, on each side.
    now = time.time_ns() // 1000 if now_us is None else now_us
    gap = max(0, lower - now, now - upper)
    widen = gap // 10
    return LastUpdated(lower - widen, upper + widen)


def _count(value: str, max_count: int) -> int:
    if not value.isascii() or not value.isdigit():
        raise BadRequest(
            f"Invalid _count {value[:100]!r}: expected a non-negative integer "
            "(R4 search.html#count).",
            expression="http._count",
        )
    digits = value.lstrip("0") or "0"
    if len(digits) > _MAX_INT_DIGITS:
        return max_count
    return min(int(digits), max_count)


def read_subset(params: Sequence[tuple[str, str]]) -> tuple[bool, frozenset[str] | None]:
    """``(summary, elements)`` of a read or vread: ``_summary`` and ``_elements`` apply there
    too (R4 http.html#read, search.html#summary, #elements) but only to the FHIR form (R4
    binary.html#rest: not to the native content). ``_summary=true``/``text`` leave ``data``
    out, ``false``/``data`` change nothing; ``count`` is a search's and a 400 here. Each may
    appear once; other parameters are not this function's business."""
    seen: set[str] = set()
    summary = False
    elements: frozenset[str] | None = None
    for name, value in params:
        if name == "_summary":
            _once(name, seen)
            if _SUMMARY.get(value) not in ("true", "false"):
                raise BadRequest(
                    f"Invalid _summary {value[:100]!r} on a read: expected true, false, text or "
                    "data (count applies to searches; R4 search.html#summary).",
                    expression="http._summary",
                )
            summary = _SUMMARY[value] == "true"
        elif name == "_elements":
            _once(name, seen)
            names = _elements(value)
            elements = frozenset(names) if names else None
    return summary, elements


def _elements(value: str) -> list[str]:
    names: list[str] = []
    for element in split_values(value, "_elements"):
        element = element.strip()
        if not element or element in names:
            continue
        if element not in BINARY_ELEMENTS:
            raise BadRequest(
                f"Unknown element {element[:100]!r} in _elements: Binary has "
                f"{', '.join(BINARY_ELEMENTS)} (R4 search.html#elements, binary.html#resource).",
                expression="http._elements",
            )
        names.append(element)
    return names


def _once(name: str, seen: set[str]) -> None:
    if name in seen:
        raise BadRequest(
            f"{name} may be given only once: repeating it is ambiguous "
            "(R4 http.html#history; search.html#count).",
            expression=f"http.{name}",
        )
    seen.add(name)


def _modifier(name: str, base: str, modifier: str) -> BadRequest:
    why = (
        "it matches logical ids exactly and case-sensitively already (R4 search.html#id)"
        if base == "_id"
        else "fhirbin supports no modifiers on it (R4 search.html#modifiers)"
    )
    return BadRequest(
        f"The modifier ':{modifier[:50]}' is not supported on {base}: {why}.",
        expression=f"http.{name}",
        code="not-supported",
    )


def _unknown(name: str, supported: str) -> BadRequest:
    return BadRequest(
        f"Unknown or unsupported parameter {name[:100]!r} "
        f"(the request asked for Prefer: handling=strict). Binary supports {supported}.",
        expression=f"http.{name}",
        code="not-supported",
    )
