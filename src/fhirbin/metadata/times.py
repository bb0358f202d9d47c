"""Timestamps as BIGINT microseconds since the Unix epoch, UTC (exact on every database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_micros(when: datetime) -> int:
    """Microseconds since the Unix epoch; exact integer arithmetic, no float rounding."""
    if when.utcoffset() is None:
        raise ValueError("a naive datetime has no defined instant; pass a timezone-aware one")
    return (when - _EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)
