"""fhirbin.fhir.conditional: If-None-Match, If-Modified-Since, If-Match."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from fhirbin.errors import BadRequest
from fhirbin.fhir.binary import etag, http_date
from fhirbin.fhir.conditional import (
    if_match_ok,
    if_modified_since,
    if_none_match,
    not_modified,
    parse_entity_tags,
    parse_http_date,
)

MODIFIED = datetime(2024, 5, 6, 10, 0, 0, 750000, tzinfo=UTC)  # sub-second on purpose
MODIFIED_HTTP = "Mon, 06 May 2024 10:00:00 GMT"


@pytest.mark.parametrize(
    ("header", "tags"),
    [
        ("*", None),
        (" * ", None),
        ('"3"', [(False, "3")]),
        ('W/"3"', [(True, "3")]),
        ('W/"1", "2" ,W/"3"', [(True, "1"), (False, "2"), (True, "3")]),
        ('"a,b", "c"', [(False, "a,b"), (False, "c")]),  # commas are etagc
        ('""', [(False, "")]),
        ("", []),
        (' , "1",,', [(False, "1")]),
        ("3", [(False, "3")]),  # tolerated: unquoted
        ("W/3", [(True, "3")]),
        ('w/"3"', [(True, "3")]),  # tolerated: lower-case w/
    ],
)
def test_entity_tags_are_parsed_weak_or_strong(
    header: str, tags: list[tuple[bool, str]] | None
) -> None:
    assert parse_entity_tags(header) == tags


@pytest.mark.parametrize("header", ['"3', 'W/ "3"', '"1" "2"', '*, "1"', '"1", *', 'x"y', "a b"])
def test_malformed_entity_tags_are_400_naming_the_header(header: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_entity_tags(header, field="If-Match")
    assert info.value.expression == "http.If-Match"


@pytest.mark.parametrize(
    ("header", "result"),
    [
        (None, False),
        ('W/"3"', True),
        ('"3"', True),  # weak comparison
        ("3", True),
        ('W/"2"', False),
        ('W/"2", W/"3"', True),
        ('W/"03"', False),  # docs/decisions.md#version-ids
        ("*", True),
        ("", False),
    ],
)
def test_if_none_match_uses_the_weak_comparison(header: str | None, result: bool) -> None:
    assert if_none_match(header, 3) is result


def test_if_none_match_names_itself_when_malformed() -> None:
    with pytest.raises(BadRequest) as info:
        if_none_match('"3', 3)
    assert info.value.expression == "http.If-None-Match"


@pytest.mark.parametrize(
    ("header", "result"),
    [
        (None, False),
        (MODIFIED_HTTP, True),  # equal at one-second precision
        ("Mon, 06 May 2024 10:00:01 GMT", True),
        ("Mon, 06 May 2024 09:59:59 GMT", False),
        ("Monday, 06-May-24 10:00:00 GMT", True),  # RFC 850
        ("Mon May  6 10:00:00 2024", True),  # asctime
        ("garbage", False),  # invalid dates are ignored
        ("Mon, 06 May 2024 10:00:00 +0000", False),  # not an HTTP-date
        ("2024-05-06T10:00:00Z", False),
        (f"{MODIFIED_HTTP}, {MODIFIED_HTTP}", False),  # a list: ignored
        ("", False),
    ],
)
def test_if_modified_since_compares_to_the_second(header: str | None, result: bool) -> None:
    assert if_modified_since(header, MODIFIED) is result


def test_if_modified_since_accepts_the_last_modified_the_server_sent() -> None:
    assert if_modified_since(http_date(MODIFIED), MODIFIED)
    local = MODIFIED.astimezone(timezone(timedelta(hours=-7)))
    assert if_modified_since(http_date(MODIFIED), local)


@pytest.mark.parametrize(
    ("inm", "ims", "result"),
    [
        (None, None, False),
        (etag(3), None, True),
        (etag(2), MODIFIED_HTTP, False),  # If-None-Match present: If-Modified-Since ignored
        (etag(3), "Mon, 06 May 2024 09:00:00 GMT", True),
        (None, MODIFIED_HTTP, True),
        (None, "Mon, 06 May 2024 09:00:00 GMT", False),
        ("", MODIFIED_HTTP, False),  # present though empty: it decides
    ],
)
def test_not_modified_gives_if_none_match_precedence(
    inm: str | None, ims: str | None, result: bool
) -> None:
    assert not_modified(inm, ims, 3, MODIFIED) is result


@pytest.mark.parametrize(
    ("header", "version", "result"),
    [
        (None, 3, True),
        (None, None, True),
        ("*", 3, True),
        ("*", None, False),  # nothing to match
        ('W/"3"', 3, True),
        ('"3"', 3, True),  # weak comparison, as FHIR clients send weak ETags back
        ('W/"2"', 3, False),
        ('W/"1", W/"3"', 3, True),
        ('W/"3"', None, False),
        ("", 3, False),  # an empty list matches nothing
    ],
)
def test_if_match_ok(header: str | None, version: int | None, result: bool) -> None:
    assert if_match_ok(header, version) is result


def test_if_match_names_itself_when_malformed_even_for_a_missing_resource() -> None:
    with pytest.raises(BadRequest) as info:
        if_match_ok('W/"3', None)
    assert info.value.expression == "http.If-Match"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Sun, 06 Nov 1994 08:49:37 GMT", datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)),
        ("Sunday, 06-Nov-94 08:49:37 GMT", datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)),
        ("Sun Nov  6 08:49:37 1994", datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)),
        ("Thu, 31 Feb 2024 00:00:00 GMT", None),
        ("Sun, 06 Nov 1994 25:49:37 GMT", None),
        ("sun, 06 nov 1994 08:49:37 gmt", None),
        ("Sun, 6 Nov 1994 08:49:37 GMT", None),
    ],
)
def test_http_dates_in_the_three_rfc9110_forms(value: str, expected: datetime | None) -> None:
    assert parse_http_date(value) == expected


def test_rfc850_years_more_than_50_years_ahead_are_in_the_past() -> None:
    now = datetime.now(UTC).year
    ahead = (now + 60) % 100
    parsed = parse_http_date(f"Monday, 01-Jan-{ahead:02d} 00:00:00 GMT")
    assert parsed is not None
    assert now - 100 < parsed.year <= now
