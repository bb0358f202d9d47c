"""fhirbin.fhir.prefer: one RFC 7240 Prefer parser for return= and handling=."""

from __future__ import annotations

import pytest

from fhirbin.fhir import search
from fhirbin.fhir.prefer import (
    Preference,
    Return,
    parse_prefer,
    prefer_handling,
    prefer_return,
)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, {}),
        ("", {}),
        (" , ,", {}),
        ("respond-async", {"respond-async": Preference("")}),
        ("return=minimal", {"return": Preference("minimal")}),
        ("RETURN = minimal", {"return": Preference("minimal")}),
        ('return="minimal"', {"return": Preference("minimal")}),
        (
            'foo="a,b;c", return=minimal',
            {"foo": Preference("a,b;c"), "return": Preference("minimal")},
        ),
        ('foo="a\\"b"', {"foo": Preference('a"b')}),
        (
            'return=minimal; foo=1; Bar="x;y", wait=10',
            {
                "return": Preference("minimal", (("foo", "1"), ("bar", "x;y"))),
                "wait": Preference("10"),
            },
        ),
        ("return=minimal, return=representation", {"return": Preference("minimal")}),
        ("return=bogus, return=minimal", {"return": Preference("bogus")}),
        ("=x, return=minimal", {"return": Preference("minimal")}),  # no name: skipped
        ("return=a b, handling=strict", {"handling": Preference("strict")}),  # not a word
        ("return=minimal;;", {"return": Preference("minimal")}),
    ],
)
def test_parse_prefer_follows_rfc7240(header: str | None, expected: dict[str, Preference]) -> None:
    assert parse_prefer(header) == expected


@pytest.mark.parametrize(
    ("header", "returning"),
    [
        (None, Return.MINIMAL),
        ("", Return.MINIMAL),
        ("return=representation", Return.REPRESENTATION),
        ("return=OperationOutcome", Return.OPERATION_OUTCOME),
        ("return=operationoutcome", Return.OPERATION_OUTCOME),
        ('return="representation"', Return.REPRESENTATION),
        ("handling=strict, return=representation", Return.REPRESENTATION),
        ("return=representation; charset=x", Return.REPRESENTATION),
        ("return=bogus", Return.MINIMAL),
        ("return=bogus, return=representation", Return.MINIMAL),  # only the first counts
        ("return", Return.MINIMAL),
        ("handling=strict; return=representation", Return.MINIMAL),  # a parameter of handling
    ],
)
def test_prefer_return_falls_back_to_the_default(header: str | None, returning: Return) -> None:
    assert prefer_return(header, Return.MINIMAL) is returning


def test_prefer_return_default_is_the_callers() -> None:
    assert prefer_return(None, Return.REPRESENTATION) is Return.REPRESENTATION
    assert prefer_return("respond-async", Return.OPERATION_OUTCOME) is Return.OPERATION_OUTCOME


@pytest.mark.parametrize(
    ("header", "handling"),
    [
        ("handling=strict", "strict"),
        ("handling=LENIENT", "lenient"),
        ('return=minimal, handling="strict"', "strict"),
        ('foo="x, handling=strict"', None),  # inside a quoted string
        ("handling=", None),
        ("handling", None),
    ],
)
def test_prefer_handling_is_strict_lenient_or_none(header: str, handling: str | None) -> None:
    assert prefer_handling(header) == handling


def test_prefer_handling_is_still_importable_from_search() -> None:
    assert search.prefer_handling is prefer_handling
