"""fhirbin.fhir.search: _id, _lastUpdated, result parameters, unknown parameters, the self
link, and history parameters."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

import pytest

from fhirbin.errors import BadRequest
from fhirbin.fhir.dates import datetime_to_us
from fhirbin.fhir.search import (
    BINARY_ELEMENTS,
    HistoryRequest,
    LastUpdated,
    SearchRequest,
    parse_binary_search,
    parse_history_params,
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
        ([("foo", "1"), ("_include", "x"), ("_ID", "a")], None, []),  # unknown: ignored
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


@pytest.mark.parametrize(
    "name", ["foo", "_include", "_has", "_text", "_LastUpdated", "_ID", "foo:exact", "_at"]
)
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


# --- _lastUpdated --------------------------------------------------------------------------

DAY_L = datetime_to_us(datetime(2024, 1, 1, tzinfo=UTC))
DAY_U = datetime_to_us(datetime(2024, 1, 2, tzinfo=UTC))
NOW = datetime_to_us(datetime(2024, 1, 12, tzinfo=UTC))  # ten days after the day's end
JUST_BEFORE, FIRST, LAST, JUST_AFTER = DAY_L - 1, DAY_L, DAY_U - 1, DAY_U


@pytest.mark.parametrize(
    ("value", "condition", "matching"),
    [
        ("2024-01-01", LastUpdated(DAY_L, DAY_U, True), {FIRST, LAST}),
        ("eq2024-01-01", LastUpdated(DAY_L, DAY_U, True), {FIRST, LAST}),
        ("ne2024-01-01", LastUpdated(DAY_L, DAY_U, False), {JUST_BEFORE, JUST_AFTER}),
        ("gt2024-01-01", LastUpdated(DAY_U, None, True), {JUST_AFTER}),
        ("sa2024-01-01", LastUpdated(DAY_U, None, True), {JUST_AFTER}),
        ("lt2024-01-01", LastUpdated(None, DAY_L, True), {JUST_BEFORE}),
        ("eb2024-01-01", LastUpdated(None, DAY_L, True), {JUST_BEFORE}),
        ("ge2024-01-01", LastUpdated(DAY_L, None, True), {FIRST, LAST, JUST_AFTER}),
        ("le2024-01-01", LastUpdated(None, DAY_U, True), {JUST_BEFORE, FIRST, LAST}),
        # ap: the gap from the range to now is 10 days, so it widens by one day on each side.
        (
            "ap2024-01-01",
            LastUpdated(DAY_L - 86_400_000_000, DAY_U + 86_400_000_000, True),
            {JUST_BEFORE, FIRST, LAST, JUST_AFTER},
        ),
    ],
)
def test_last_updated_prefixes_are_conditions_on_the_value_range(
    value: str, condition: LastUpdated, matching: set[int]
) -> None:
    request = parse_binary_search([("_lastUpdated", value)], strict=False, now_us=NOW)
    assert request.updated == (condition,)
    assert request.used == [("_lastUpdated", value)]
    points = {JUST_BEFORE, FIRST, LAST, JUST_AFTER}
    assert {t for t in points if condition.matches(t)} == matching


@pytest.mark.parametrize(
    ("now", "widen"),
    [
        (DAY_L + 5, 0),  # now inside the range: ap is eq
        (DAY_U + 10 * 3_600_000_000, 3_600_000_000),  # 10 h after: 1 h each side
        (DAY_L - 100, 10),  # in the future: measured to the range's start
    ],
)
def test_ap_widens_by_a_tenth_of_the_gap_between_now_and_the_range(now: int, widen: int) -> None:
    request = parse_binary_search([("_lastUpdated", "ap2024-01-01")], strict=False, now_us=now)
    assert request.updated == (LastUpdated(DAY_L - widen, DAY_U + widen),)


def test_ap_without_now_uses_the_clock() -> None:
    (condition,) = parse_binary_search([("_lastUpdated", "ap2000")], strict=False).updated
    assert condition.lower_us is not None
    assert condition.lower_us < datetime_to_us(datetime(2000, 1, 1, tzinfo=UTC))


def test_repeated_last_updated_values_are_anded() -> None:
    params = [("_lastUpdated", "ge2024-01-01"), ("_lastUpdated", "lt2024-01-02T00:00:00 01:00")]
    request = parse_binary_search(params, strict=False)
    assert len(request.updated) == 2
    assert request.used == [
        ("_lastUpdated", "ge2024-01-01"),
        ("_lastUpdated", "lt2024-01-02T00:00:00+01:00"),  # the repaired value was applied
    ]


@pytest.mark.parametrize("value", ["2024,2025", "ge2024,le2025", "2024,2025,"])
def test_or_on_last_updated_is_refused(value: str) -> None:
    with pytest.raises(BadRequest, match="OR on _lastUpdated is not supported") as info:
        parse_binary_search([("_lastUpdated", value)], strict=False)
    assert info.value.expression == "http._lastUpdated"


def test_empty_members_of_a_last_updated_list_are_dropped() -> None:
    request = parse_binary_search([("_lastUpdated", "2024,")], strict=False)
    assert request.updated == (
        LastUpdated(DAY_L, datetime_to_us(datetime(2025, 1, 1, tzinfo=UTC))),
    )


@pytest.mark.parametrize(
    "value", ["xx2024", "GT2024", "gt", "gt 2024", "2024-1", "e2024", "2024\\,2025", "2024\\x"]
)
def test_bad_last_updated_values_are_400(value: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_binary_search([("_lastUpdated", value)], strict=False)
    assert info.value.expression == "http._lastUpdated"


@pytest.mark.parametrize(
    "name", ["_lastUpdated:missing", "_count:x", "_sort:asc", "_summary:x", "_page:x"]
)
def test_modifiers_on_supported_parameters_are_400(name: str) -> None:
    with pytest.raises(BadRequest, match="modifier") as info:
        parse_binary_search([(name, "true")], strict=False)
    assert info.value.expression == f"http.{name}"
    assert info.value.code == "not-supported"


# --- result parameters ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "count", "applied"),
    [
        ("5", 5, "5"),
        ("0", 0, "0"),  # total only
        ("007", 7, "7"),
        ("1000", 1000, "1000"),
        ("1001", 1000, "1000"),  # capped: the self link says what was applied
        ("9" * 5000, 1000, "1000"),
    ],
)
def test_count_is_capped_and_reported_as_applied(value: str, count: int, applied: str) -> None:
    request = parse_binary_search([("_count", value)], strict=False)
    assert (request.count, request.used) == (count, [("_count", applied)])


def test_count_defaults_to_the_default_capped_at_the_maximum() -> None:
    assert parse_binary_search([], strict=False).count == 20
    assert parse_binary_search([], strict=False, default_count=50, max_count=10).count == 10
    request = parse_binary_search([("_count", "30")], strict=False, max_count=25)
    assert request.count == 25


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "+3", " 3", "1e3", "\u0663"])
def test_count_that_is_not_a_non_negative_integer_is_400(value: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_binary_search([("_count", value)], strict=False)
    assert info.value.expression == "http._count"


@pytest.mark.parametrize(
    ("value", "descending"), [("_lastUpdated", False), ("-_lastUpdated", True)]
)
def test_sort_by_last_updated_either_way(value: str, descending: bool) -> None:
    request = parse_binary_search([("_sort", value)], strict=False)
    assert (request.descending, request.used) == (descending, [("_sort", value)])


def test_no_sort_is_ascending() -> None:
    assert parse_binary_search([], strict=False).descending is False


@pytest.mark.parametrize("value", ["_id", "-_id", "_lastUpdated,_id", "lastUpdated", "date"])
def test_other_sorts_are_400_naming_the_sort(value: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_binary_search([("_sort", value)], strict=False)
    assert value in info.value.diagnostics
    assert info.value.expression == "http._sort"


@pytest.mark.parametrize(
    ("value", "summary"),
    [("true", "true"), ("false", "false"), ("count", "count"), ("text", "true"), ("data", "false")],
)
def test_summary_text_is_applied_as_true_and_data_as_false(value: str, summary: str) -> None:
    request = parse_binary_search([("_summary", value)], strict=False)
    assert (request.summary, request.used) == (summary, [("_summary", summary)])


@pytest.mark.parametrize("value", ["TRUE", "yes", "1", "count,true"])
def test_invalid_summary_is_400(value: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_binary_search([("_summary", value)], strict=False)
    assert info.value.expression == "http._summary"


@pytest.mark.parametrize(
    ("value", "elements", "applied"),
    [
        ("contentType", {"contentType"}, "contentType"),
        ("id,meta, data,", {"id", "meta", "data"}, "id,meta,data"),
        ("data,data", {"data"}, "data"),
        (",".join(BINARY_ELEMENTS), set(BINARY_ELEMENTS), ",".join(BINARY_ELEMENTS)),
    ],
)
def test_elements_are_binary_top_level_names(value: str, elements: set[str], applied: str) -> None:
    request = parse_binary_search([("_elements", value)], strict=False)
    assert request.elements == frozenset(elements)
    assert request.used == [("_elements", applied)]


def test_elements_with_only_empty_names_are_ignored() -> None:
    request = parse_binary_search([("_elements", ",")], strict=False)
    assert (request.elements, request.used) == (None, [])


@pytest.mark.parametrize("value", ["text", "extension", "content", "meta.versionId", "ContentType"])
def test_unknown_elements_are_400(value: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_binary_search([("_elements", value)], strict=False)
    assert info.value.expression == "http._elements"


@pytest.mark.parametrize("value", ["none", "estimate", "accurate"])
def test_total_is_none_estimate_or_accurate(value: str) -> None:
    request = parse_binary_search([("_total", value)], strict=False)
    assert (request.total, request.used) == (value, [("_total", value)])


@pytest.mark.parametrize("value", ["all", "true", "Accurate"])
def test_other_totals_are_400(value: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_binary_search([("_total", value)], strict=False)
    assert info.value.expression == "http._total"


def test_page_is_kept_raw_and_never_reported_as_used() -> None:
    request = parse_binary_search([("_page", "abc"), ("_id", "a")], strict=True)
    assert (request.page, request.used) == ("abc", [("_id", "a")])


@pytest.mark.parametrize("name", ["_count", "_sort", "_summary", "_elements", "_total", "_page"])
def test_result_parameters_given_twice_are_400(name: str) -> None:
    value = {"_sort": "_lastUpdated", "_summary": "true", "_elements": "id", "_total": "none"}
    v = value.get(name, "1")
    with pytest.raises(BadRequest, match="only once") as info:
        parse_binary_search([(name, v), (name, v)], strict=False)
    assert info.value.expression == f"http.{name}"


def test_invalid_values_are_400_even_when_lenient() -> None:
    with pytest.raises(BadRequest):
        parse_binary_search([("_count", "x")], strict=False)


def test_a_full_search_reports_every_applied_parameter_in_request_order() -> None:
    params = [
        ("_summary", "text"),
        ("foo", "bar"),
        ("_count", "5000"),
        ("_id", "a,b"),
        ("_page", "tok"),
        ("_sort", "-_lastUpdated"),
        ("_lastUpdated", "ge2024"),
        ("_total", "accurate"),
        ("_elements", "contentType"),
        ("_format", "json"),
    ]
    request = parse_binary_search(params, strict=False, default_count=10, max_count=100)
    assert request == SearchRequest(
        ids=[frozenset({"a", "b"})],
        used=[
            ("_summary", "true"),
            ("_count", "100"),
            ("_id", "a,b"),
            ("_sort", "-_lastUpdated"),
            ("_lastUpdated", "ge2024"),
            ("_total", "accurate"),
            ("_elements", "contentType"),
        ],
        updated=(LastUpdated(datetime_to_us(datetime(2024, 1, 1, tzinfo=UTC)), None),),
        count=100,
        descending=True,
        summary="true",
        elements=frozenset({"contentType"}),
        total="accurate",
        page="tok",
    )


def test_self_link_of_a_normalised_search_parses_back_to_the_same_search() -> None:
    params = [("_lastUpdated", "gt2024-01-01T00:00:00 01:00"), ("_count", "5000"), ("_id", "a")]
    first = parse_binary_search(params, strict=True, now_us=NOW)
    again = parse_binary_search(parse_qsl(urlsplit(self_link(BASE, first.used)).query), True)
    assert again == first


# --- history -------------------------------------------------------------------------------


def test_history_defaults() -> None:
    assert parse_history_params([], strict=True) == HistoryRequest(
        count=20, since_us=None, page=None, used=[]
    )


def test_history_reads_count_since_and_page() -> None:
    params = [("_count", "2000"), ("_since", "2024-01-01T00:00:00 01:00"), ("_page", "p")]
    request = parse_history_params(params, strict=True, default_count=5, max_count=50)
    assert request == HistoryRequest(
        count=50,
        since_us=datetime_to_us(datetime(2023, 12, 31, 23, tzinfo=UTC)),
        page="p",
        used=[("_count", "50"), ("_since", "2024-01-01T00:00:00+01:00")],
    )


@pytest.mark.parametrize("since", ["2024-01-01", "2024-01-01T00:00Z", "2024-01-01T00:00:00", "x"])
def test_history_since_must_be_a_full_instant(since: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_history_params([("_since", since)], strict=False)
    assert info.value.expression == "http._since"


@pytest.mark.parametrize("name", ["_count", "_since", "_page"])
def test_history_parameters_given_twice_are_400(name: str) -> None:
    value = "2024-01-01T00:00:00Z" if name == "_since" else "1"
    with pytest.raises(BadRequest, match="only once") as info:
        parse_history_params([(name, value), (name, value)], strict=False)
    assert info.value.expression == f"http.{name}"


@pytest.mark.parametrize("name", ["_at", "_list", "_id", "_summary", "foo"])
def test_history_at_list_and_others_are_unknown_ignored_or_400_when_strict(name: str) -> None:
    assert parse_history_params([(name, "2024")], strict=False).used == []
    with pytest.raises(BadRequest) as info:
        parse_history_params([(name, "2024")], strict=True)
    assert info.value.expression == f"http.{name}"


def test_history_ignores_empty_values_and_format_controls() -> None:
    params = [("_since", ""), ("_format", "json"), ("_pretty", "true"), ("_count", "")]
    assert parse_history_params(params, strict=True).used == []


@pytest.mark.parametrize("value", ["-1", "x"])
def test_history_count_must_be_a_non_negative_integer(value: str) -> None:
    with pytest.raises(BadRequest):
        parse_history_params([("_count", value)], strict=False)


def test_history_modifiers_are_400() -> None:
    with pytest.raises(BadRequest, match="modifier"):
        parse_history_params([("_since:exact", "2024-01-01T00:00:00Z")], strict=False)
