"""FHIR date search values as intervals of microseconds since the Unix epoch (UTC).

Owns the value syntax of R4 ``date`` search parameters (search.html#date) as used by
``_lastUpdated`` and the ``instant`` syntax of ``_since`` (http.html#history,
datatypes.html#instant). Prefixes (``ge``, ``lt``, ...) belong to :mod:`fhirbin.fhir.search`.

A search date is an implicit range at its precision (search.html#date): ``2024`` is all of
2024, ``2024-05-06T10:00`` the minute from 10:00 to 10:01, ``10:00:00.5`` the tenth of a
second from .5 to .6. :func:`parse_date` returns that range half-open, ``[lower_us, upper_us)``.

Accepted spellings (search.html#date: ``yyyy-mm-ddThh:mm:ss.ssss[Z|(+|-)hh:mm]``, precision
reduced from the right; minutes MUST accompany hours)::

    2024   2024-05   2024-05-06   2024-05-06T10:00   2024-05-06T10:00:00
    2024-05-06T10:00:00.123456   each time form + Z | +hh:mm | -hh:mm

Decisions where the spec leaves room:

* A time without a timezone (search.html#date: one SHOULD be given) is taken as UTC, and so
  is a date without a time: fhirbin's clock and ``meta.lastUpdated`` are UTC.
* Fractions finer than a microsecond are cut to the microsecond (the interval is then the
  microsecond that holds the value).
* ``+`` in an offset arrives as a space when a client forgets to %-encode it in a query
  (``+`` means space in ``application/x-www-form-urlencoded``): a single space directly
  before ``hh:mm`` at the end of a value with a time is read as ``+``.
* Values arrive %-decoded, so a ``%3A``-escaped colon (search.html#date: servers MUST cope)
  is already ``:``. A literal ``%3A`` still present (a client that escaped twice) is also read
  as ``:``.
* Lower-case ``t`` / ``z``, leap seconds (``:60``), hour ``24`` and years before 0001 are
  malformed. Offsets may be up to ``±23:59``.

Malformed values are a 400 naming the parameter (``http._lastUpdated`` unless told).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from fhirbin.errors import BadRequest

__all__ = [
    "DateRange",
    "datetime_to_us",
    "parse_date",
    "parse_instant",
    "us_to_datetime",
]

_US_PER_SECOND = 1_000_000
_US_PER_DAY = 86_400 * _US_PER_SECOND
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_DATE_RE = re.compile(
    r"""
    (?P<year>[0-9]{4})
    (?:-(?P<month>[0-9]{2})
      (?:-(?P<day>[0-9]{2})
        (?:T(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})
          (?::(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]+))?)?
          (?P<tz>Z|(?P<sign>[+\-])(?P<tzh>[0-9]{2}):(?P<tzm>[0-9]{2}))?
        )?
      )?
    )?
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class DateRange:
    """``[lower_us, upper_us)`` in µs since 1970-01-01T00:00:00Z, and the value as applied
    (``value``: the input with a space-for-``+`` and a literal ``%3A`` repaired)."""

    lower_us: int
    upper_us: int
    value: str


def parse_date(value: str, *, expression: str = "http._lastUpdated") -> DateRange:
    """The interval a FHIR date search value stands for (R4 search.html#date), without prefix.

    Raises BadRequest (``expression``) when the value is not a date, dateTime or instant at
    one of the precisions listed in the module docstring.
    """
    text = _repair(value)
    m = _DATE_RE.fullmatch(text)
    if m is None:
        raise _malformed(value, expression)
    try:
        return _interval(m, text)
    except ValueError:  # out-of-range month, day, hour, ...
        raise _malformed(value, expression) from None


def parse_instant(value: str, *, expression: str = "http._since") -> int:
    """µs since the epoch of a full-precision FHIR ``instant`` (R4 datatypes.html#instant):
    seconds and a timezone are required, fractions are optional (cut to the microsecond).
    Used for ``_since`` (R4 http.html#history). Otherwise a 400 on ``expression``."""
    text = _repair(value)
    m = _DATE_RE.fullmatch(text)
    if m is None or m.group("second") is None or m.group("tz") is None:
        raise BadRequest(
            f"Invalid instant {value[:100]!r}: expected yyyy-mm-ddThh:mm:ss[.fff](Z|+hh:mm|-hh:mm)"
            ", with seconds and a timezone (R4 datatypes.html#instant).",
            expression=expression,
        )
    try:
        return _interval(m, text).lower_us
    except ValueError:
        raise _malformed(value, expression) from None


def datetime_to_us(dt: datetime) -> int:
    """µs since the epoch of a timezone-aware datetime (exact integer arithmetic)."""
    if dt.utcoffset() is None:
        raise ValueError("datetime_to_us() needs a timezone-aware datetime")
    return (dt - _EPOCH) // timedelta(microseconds=1)


def us_to_datetime(us: int) -> datetime:
    """The UTC datetime ``us`` µs after the epoch (the inverse of :func:`datetime_to_us`)."""
    return _EPOCH + timedelta(microseconds=us)


def _repair(value: str) -> str:
    text = value.replace("%3A", ":").replace("%3a", ":")
    # "...T10:00:00 01:00": a '+' decoded as a space (form encoding); only before hh:mm at the end.
    if len(text) > 6 and text[-6] == " " and "T" in text:
        text = text[:-6] + "+" + text[-5:]
    return text


def _interval(m: re.Match[str], text: str) -> DateRange:
    year = int(m.group("year"))
    if year == 0:
        raise ValueError("year 0000")
    month_s, day_s, hour_s = m.group("month"), m.group("day"), m.group("hour")
    if month_s is None:  # yyyy
        lower = _day_us(year, 1, 1)
        return DateRange(lower, _day_us(year, 12, 31) + _US_PER_DAY, text)
    month = int(month_s)
    if day_s is None:  # yyyy-mm
        last = _days_in_month(year, month)
        lower = _day_us(year, month, 1)
        return DateRange(lower, _day_us(year, month, last) + _US_PER_DAY, text)
    day_start = _day_us(year, month, int(day_s))
    if hour_s is None:  # yyyy-mm-dd
        return DateRange(day_start, day_start + _US_PER_DAY, text)
    hour, minute = int(hour_s), int(m.group("minute"))
    if hour > 23 or minute > 59:
        raise ValueError("time out of range")
    lower = day_start + (hour * 3600 + minute * 60) * _US_PER_SECOND
    width = 60 * _US_PER_SECOND  # hh:mm
    second_s, fraction = m.group("second"), m.group("fraction")
    if second_s is not None:
        second = int(second_s)
        if second > 59:
            raise ValueError("second out of range")
        lower += second * _US_PER_SECOND
        width = _US_PER_SECOND
        if fraction is not None:
            digits = fraction[:6]
            lower += int(digits.ljust(6, "0"))
            width = 10 ** (6 - len(digits))
    if m.group("tz") not in (None, "Z"):
        tzh, tzm = int(m.group("tzh")), int(m.group("tzm"))
        if tzh > 23 or tzm > 59:
            raise ValueError("offset out of range")
        offset = (tzh * 60 + tzm) * 60 * _US_PER_SECOND
        # Local time = UTC + offset, so UTC = local - offset.
        lower += -offset if m.group("sign") != "-" else offset
    return DateRange(lower, lower + width, text)


def _day_us(year: int, month: int, day: int) -> int:
    return (date(year, month, day).toordinal() - _EPOCH_ORDINAL) * _US_PER_DAY


def _days_in_month(year: int, month: int) -> int:
    if month == 12:
        return 31
    return (date(year, month + 1, 1) - date(year, month, 1)).days


def _malformed(value: str, expression: str) -> BadRequest:
    name = expression.removeprefix("http.")
    return BadRequest(
        f"Invalid date {value[:100]!r} in {name}: expected yyyy, yyyy-mm, yyyy-mm-dd or "
        "yyyy-mm-ddThh:mm[:ss[.fff]][Z|+hh:mm|-hh:mm], after an optional prefix "
        "(R4 search.html#date).",
        expression=expression,
    )
