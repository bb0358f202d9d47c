"""fhirbin.fhir.dates: FHIR search dates as half-open µs intervals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhirbin.errors import BadRequest
from fhirbin.fhir.dates import DateRange, datetime_to_us, parse_date, parse_instant, us_to_datetime


def us(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    micro: int = 0,
    *,
    tz: timezone = UTC,
) -> int:
    return datetime_to_us(datetime(year, month, day, hour, minute, second, micro, tzinfo=tz))


SECOND = 1_000_000
DAY = 86_400 * SECOND
PLUS2 = timezone(timedelta(hours=2))
MINUS0530 = timezone(-timedelta(hours=5, minutes=30))


@pytest.mark.parametrize(
    ("value", "lower", "upper"),
    [
        ("2024", us(2024, 1, 1), us(2025, 1, 1)),
        ("2024-02", us(2024, 2, 1), us(2024, 3, 1)),  # leap year February
        ("2023-02", us(2023, 2, 1), us(2023, 3, 1)),
        ("2024-12", us(2024, 12, 1), us(2025, 1, 1)),
        ("2024-05-06", us(2024, 5, 6), us(2024, 5, 7)),
        ("2024-02-29", us(2024, 2, 29), us(2024, 3, 1)),
        ("2024-05-06T10:00", us(2024, 5, 6, 10), us(2024, 5, 6, 10, 1)),
        ("2024-05-06T10:00Z", us(2024, 5, 6, 10), us(2024, 5, 6, 10, 1)),
        ("2024-05-06T10:00:00", us(2024, 5, 6, 10), us(2024, 5, 6, 10, 0, 1)),
        ("2024-05-06T10:00:00Z", us(2024, 5, 6, 10), us(2024, 5, 6, 10, 0, 1)),
        ("2024-05-06T23:59:59Z", us(2024, 5, 6, 23, 59, 59), us(2024, 5, 7)),
        (
            "2024-05-06T10:00:00.5Z",
            us(2024, 5, 6, 10, 0, 0, 500000),
            us(2024, 5, 6, 10, 0, 0, 600000),
        ),
        (
            "2024-05-06T10:00:00.25Z",
            us(2024, 5, 6, 10, 0, 0, 250000),
            us(2024, 5, 6, 10, 0, 0, 260000),
        ),
        (
            "2024-05-06T10:00:00.123456Z",
            us(2024, 5, 6, 10, 0, 0, 123456),
            us(2024, 5, 6, 10, 0, 0, 123457),
        ),
        (
            "2024-05-06T10:00:00.1234567Z",
            us(2024, 5, 6, 10, 0, 0, 123456),
            us(2024, 5, 6, 10, 0, 0, 123457),
        ),
        (
            "2024-05-06T10:00:00+02:00",
            us(2024, 5, 6, 10, tz=PLUS2),
            us(2024, 5, 6, 10, 0, 1, tz=PLUS2),
        ),
        (
            "2024-05-06T10:00-05:30",
            us(2024, 5, 6, 10, tz=MINUS0530),
            us(2024, 5, 6, 10, 1, tz=MINUS0530),
        ),
        ("2024-05-06T10:00:00-00:00", us(2024, 5, 6, 10), us(2024, 5, 6, 10, 0, 1)),
        ("1969-12-31T23:59:59Z", -SECOND, 0),
        ("0001", us(1, 1, 1), us(2, 1, 1)),
        ("9999", us(9999, 1, 1), us(9999, 12, 31) + DAY),  # the end of 9999 is not a datetime
    ],
)
def test_a_date_is_the_half_open_interval_of_its_precision(
    value: str, lower: int, upper: int
) -> None:
    r = parse_date(value)
    assert (r.lower_us, r.upper_us) == (lower, upper)
    assert r.value == value


def test_a_time_without_timezone_is_utc() -> None:
    assert parse_date("2024-05-06T10:00:00") == DateRange(
        us(2024, 5, 6, 10), us(2024, 5, 6, 10, 0, 1), "2024-05-06T10:00:00"
    )
    assert parse_date("2024-05-06T10:00").lower_us == parse_date("2024-05-06T10:00Z").lower_us


@pytest.mark.parametrize(
    ("value", "repaired"),
    [
        ("2024-01-01T00:00:00 01:00", "2024-01-01T00:00:00+01:00"),  # '+' decoded as a space
        ("2024-01-01T00:00 01:00", "2024-01-01T00:00+01:00"),
        ("2024-01-01T00%3A00%3A00Z", "2024-01-01T00:00:00Z"),  # %3A escaped twice
        ("2024-01-01T00%3a00Z", "2024-01-01T00:00Z"),
    ],
)
def test_plus_sent_as_space_and_doubly_escaped_colons_are_repaired(
    value: str, repaired: str
) -> None:
    r = parse_date(value)
    assert r.value == repaired
    assert (r.lower_us, r.upper_us) == (
        parse_date(repaired).lower_us,
        parse_date(repaired).upper_us,
    )


def test_plus_one_hour_offset_is_one_hour_before_utc() -> None:
    assert parse_date("2024-01-01T00:00:00 01:00").lower_us == us(2023, 12, 31, 23)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "24",
        "202",
        "20245",
        "2024-1",
        "2024-13",
        "2024-00",
        "2024-02-30",
        "2023-02-29",
        "2024-05-06T10",  # hours need minutes
        "2024-05-06T",
        "2024-05-06T1:00",
        "2024-05-06T24:00",
        "2024-05-06T10:60",
        "2024-05-06T10:00:60",  # no leap seconds
        "2024-05-06T10:00:00.",
        "2024-05-06T10:00:00+2:00",
        "2024-05-06T10:00:00+02",
        "2024-05-06T10:00:00+24:00",
        "2024-05-06T10:00:00+02:60",
        "2024-05-06t10:00:00z",
        "2024-05-06Z",  # a date has no timezone
        "2024-05-06 10:00",
        "0000",
        "-2024",
        "2024-05-06T10:00:00Z ",
        " 2024",
        "now",
        "\uff12\uff10\uff12\uff14",  # non-ASCII digits
        "2024-01-01T00:00:00  01:00",
    ],
)
def test_malformed_dates_are_400_on_last_updated(value: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_date(value)
    assert info.value.status == 400
    assert info.value.expression == "http._lastUpdated"


def test_the_expression_names_the_parameter_given() -> None:
    with pytest.raises(BadRequest) as info:
        parse_date("x", expression="http._since")
    assert info.value.expression == "http._since"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-06T10:00:00Z", us(2024, 5, 6, 10)),
        ("2024-05-06T10:00:00.25+02:00", us(2024, 5, 6, 10, 0, 0, 250000, tz=PLUS2)),
        ("2024-05-06T10:00:00 02:00", us(2024, 5, 6, 10, tz=PLUS2)),
    ],
)
def test_an_instant_is_one_microsecond(value: str, expected: int) -> None:
    assert parse_instant(value) == expected


@pytest.mark.parametrize(
    "value", ["2024", "2024-05-06", "2024-05-06T10:00Z", "2024-05-06T10:00:00", "bogus"]
)
def test_an_instant_needs_seconds_and_a_timezone(value: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_instant(value)
    assert info.value.expression == "http._since"


@given(st.datetimes(timezones=st.just(UTC)))
def test_microseconds_round_trip_through_datetimes(dt: datetime) -> None:
    assert us_to_datetime(datetime_to_us(dt)) == dt


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
def test_every_precision_holds_the_instant_it_was_cut_from(dt: datetime) -> None:
    t = datetime_to_us(dt.replace(tzinfo=UTC))
    day = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}"
    minute = f"{day}T{dt.hour:02d}:{dt.minute:02d}"
    second = f"{minute}:{dt.second:02d}"
    exact = parse_date(f"{second}.{dt.microsecond:06d}Z")
    assert (exact.lower_us, exact.upper_us) == (t, t + 1)
    widths = {second: SECOND, minute: 60 * SECOND, day: DAY}
    for value in [f"{dt.year:04d}", day[:7], day, minute, minute + "Z", second, second + "Z"]:
        r = parse_date(value)
        assert r.lower_us <= t < r.upper_us, value
        if value.rstrip("Z") in widths:
            assert r.upper_us - r.lower_us == widths[value.rstrip("Z")]


def test_datetime_to_us_needs_an_aware_datetime() -> None:
    with pytest.raises(ValueError, match="aware"):
        datetime_to_us(datetime(2024, 1, 1))
