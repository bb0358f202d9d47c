"""fhirbin.fhir.search: _id search, escaping, modifiers, unknown parameters, the self link."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from fhirbin.errors import BadRequest
from fhirbin.fhir.search import (
    SearchRequest,
    parse_binary_search,
    prefer_handling,
    self_link,
    split_values,
)

BASE = "https://fhir.example.org/fhir"


@pytest.mark.parametrize(
    ("prefer", "handling"),
    [
        (None, None),
        ("", None),
        ("handling=strict", "strict"),
        ("handling=lenient", "lenient"),
        ("HANDLING=Strict", "strict"),
        ('handling="strict"', "strict"),
        ("return=minimal, handling=strict", "strict"),
        ("return=representation,handling = lenient", "lenient"),
        ("handling=lenient, handling=strict", "lenient"),  # RFC 7240: the first one counts
        ("handling=bogus", None),
        ("respond-async", None),
        ("return=representation; handling=strict", None),  # a parameter of return, not a pref
    ],
)
def test_prefer_handling_is_read_from_rfc7240_prefer(prefer: str | None, handling: str) -> None:
    assert prefer_handling(prefer) == handling


@pytest.mark.parametrize(
    ("params", "ids", "used"),
    [
        ([], None, []),
        ([("_id", "a")], [{"a"}], [("_id", "a")]),
        ([("_id", "a,b")], [{"a", "b"}], [("_id", "a,b")]),
        ([("_id", "a"), ("_id", "b")], [{"a"}, {"b"}], [("_id", "a"), ("_id", "b")]),
        ([("_id", "")], None, []),  # empty values are ignored, not errors
        ([("_id", ""), ("_id", "a")], [{"a"}], [("_id", "a")]),
        ([("_id", "A")], [{"A"}], [("_id", "A")]),  # case kept: ids are case sensitive
        ([("_id", "a_b")], [set()], [("_id", "a_b")]),  # invalid id: matches nothing
        ([("_id", "a,b_c,")], [{"a"}], [("_id", "a,b_c,")]),
        ([("_id", "a\\,b")], [set()], [("_id", "a\\,b")]),  # the literal id "a,b"
        ([("_format", "json"), ("_pretty", "true"), ("_id", "a")], [{"a"}], [("_id", "a")]),
        ([("foo", "1"), ("_count", "5"), ("_ID", "a")], None, []),  # unknown: ignored
    ],
)
def test_id_search_is_an_and_of_or_sets(
    params: list[tuple[str, str]], ids: list[set[str]] | None, used: list[tuple[str, str]]
) -> None:
    request = parse_binary_search(params, strict=False)
    assert request == SearchRequest(
        ids=None if ids is None else [frozenset(s) for s in ids], used=used
    )


@pytest.mark.parametrize(
    ("value", "values"),
    [
        ("a,b", ["a", "b"]),
        ("a\\,b,c", ["a,b", "c"]),
        ("\\$\\|\\\\", ["$|\\"]),
        ("a,", ["a", ""]),
    ],
)
def test_values_split_on_unescaped_commas_and_are_unescaped(value: str, values: list[str]) -> None:
    assert split_values(value) == values


@pytest.mark.parametrize("value", ["a\\b", "a\\", "\\x,y"])
def test_lone_backslash_is_400(value: str) -> None:
    with pytest.raises(BadRequest, match="backslash") as info:
        parse_binary_search([("_id", value)], strict=False)
    assert info.value.expression == "http._id"


@pytest.mark.parametrize("name", ["_id:exact", "_id:missing", "_id:not", "_id:"])
def test_id_with_a_modifier_is_400(name: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_binary_search([(name, "a")], strict=False)
    assert info.value.status == 400
    assert info.value.expression == f"http.{name}"


@pytest.mark.parametrize("name", ["foo", "_count", "_sort", "_summary", "_lastUpdated", "_ID"])
def test_unknown_parameter_is_400_when_strict(name: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_binary_search([("_id", "a"), (name, "1")], strict=True)
    assert info.value.expression == f"http.{name}"
    assert name in info.value.diagnostics


def test_format_controls_and_empty_values_are_never_errors_even_when_strict() -> None:
    params = [("_format", "json"), ("_pretty", "true"), ("foo", ""), ("_id", "a")]
    assert parse_binary_search(params, strict=True) == SearchRequest(
        ids=[frozenset({"a"})], used=[("_id", "a")]
    )


@pytest.mark.parametrize(
    ("used", "link"),
    [
        ([], f"{BASE}/Binary"),
        ([("_id", "a")], f"{BASE}/Binary?_id=a"),
        ([("_id", "a,b")], f"{BASE}/Binary?_id=a,b"),
        ([("_id", "a"), ("_id", "b")], f"{BASE}/Binary?_id=a&_id=b"),
        ([("_id", "a\\,b")], f"{BASE}/Binary?_id=a%5C,b"),
        ([("_id", "a b&c=d#/é")], f"{BASE}/Binary?_id=a%20b%26c%3Dd%23%2F%C3%A9"),
    ],
)
def test_self_link_lists_exactly_the_used_parameters_url_encoded(
    used: list[tuple[str, str]], link: str
) -> None:
    assert self_link(BASE, used) == link


def test_self_link_query_decodes_back_to_the_used_parameters() -> None:
    used = [("_id", "a,b"), ("_id", "x\\,y z&")]
    assert parse_qsl(urlsplit(self_link(BASE, used)).query) == used
