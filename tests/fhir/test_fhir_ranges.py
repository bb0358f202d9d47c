"""fhirbin.fhir.ranges: Range, If-Range, Content-Range and multipart/byteranges."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhirbin.errors import FhirbinError
from fhirbin.fhir.binary import etag, http_date
from fhirbin.fhir.ranges import (
    MAX_RANGES,
    RangeNotSatisfiable,
    content_range,
    if_range_ok,
    multipart_byteranges,
    multipart_content_type,
    new_boundary,
    parse_range,
)

# A spec is (first, last) for "first-last", (first, None) for "first-", (None, n) for "-n".
Spec = tuple[int | None, int | None]


def render(specs: list[Spec]) -> str:
    return "bytes=" + ",".join(
        f"-{b}" if a is None else f"{a}-" if b is None else f"{a}-{b}" for a, b in specs
    )


def reference(specs: list[Spec], size: int) -> list[tuple[int, int]] | str | None:
    """RFC 9110 §14 plus fhirbin's guards, written the obvious way; "416" for unsatisfiable."""
    if size == 0 or len(specs) > MAX_RANGES:
        return None
    out: list[tuple[int, int]] = []
    for a, b in specs:
        if a is None:
            assert b is not None
            if b > 0:
                out.append((max(0, size - b), size))
        elif b is not None and b < a:
            return None
        elif a < size:
            out.append((a, size if b is None else min(b + 1, size)))
    if not out:
        return "416"
    if sum(e - s for s, e in out) > size:
        return None
    return out


def run(header: str, size: int) -> list[tuple[int, int]] | str | None:
    try:
        return parse_range(header, size)
    except RangeNotSatisfiable as e:
        return "416" if e.headers == {"Content-Range": f"bytes */{size}"} else "bad 416"


small = st.integers(min_value=0, max_value=40)
specs = st.lists(
    st.one_of(
        st.tuples(small, small),
        st.tuples(small, st.none()),
        st.tuples(st.none(), small),
    ),
    min_size=1,
    max_size=6,
)


@given(specs, st.integers(min_value=0, max_value=30))
def test_range_parser_agrees_with_a_simple_reference(ranges: list[Spec], size: int) -> None:
    assert run(render(ranges), size) == reference(ranges, size)


@given(specs, st.integers(min_value=1, max_value=30))
def test_ranges_served_lie_within_the_content_and_fit_its_size(
    ranges: list[Spec], size: int
) -> None:
    result = run(render(ranges), size)
    if isinstance(result, list):
        assert all(0 <= s < e <= size for s, e in result)
        assert sum(e - s for s, e in result) <= size


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-99", 1000, [(0, 100)]),
        ("bytes=0-0", 1000, [(0, 1)]),
        ("bytes=500-", 1000, [(500, 1000)]),
        ("bytes=-100", 1000, [(900, 1000)]),
        ("bytes=-5000", 1000, [(0, 1000)]),  # suffix longer than the content: all of it
        ("bytes=900-5000", 1000, [(900, 1000)]),  # clipped
        ("bytes=0-1,5-6", 10, [(0, 2), (5, 7)]),
        ("bytes=5-6,0-1", 10, [(5, 7), (0, 2)]),  # the order asked for
        ("bytes=0-1, 20-30 ,5-6", 10, [(0, 2), (5, 7)]),  # the one beyond the end is dropped
        ("bytes=0-1,,5-6,", 10, [(0, 2), (5, 7)]),  # empty list members
        ("BYTES=0-1", 10, [(0, 2)]),  # the unit is case-insensitive
        ("bytes=0-4,3-6", 10, [(0, 5), (3, 7)]),  # overlapping but within the size: served
        ("bytes=0-9,0-9", 10, None),  # adds up to more than the whole: ignored
        ("bytes=0-", 10, [(0, 10)]),
        ("bytes=-0,0-1", 10, [(0, 2)]),
    ],
)
def test_ranges_are_clipped_and_kept_in_order(
    header: str, size: int, expected: list[tuple[int, int]] | None
) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    "header",
    [
        "",
        "bytes",
        "bytes=",
        "bytes=,",
        "bytes=-",
        "bytes=a-b",
        "bytes=1-0",  # last before first: invalid, so the header is ignored
        "bytes=0-1,3-2",
        "bytes=1--2",
        "bytes=+1-2",
        "bytes=0x1-2",
        "bytes= =0-1",
        "bytes =0-1",
        "items=0-1",
        "0-1",
        "bytes=0-1;2-3",
        "bytes=\u0661-2",  # non-ASCII digit
        "bytes=" + "9" * 5000 + "-",
    ],
)
def test_invalid_or_foreign_ranges_are_ignored(header: str) -> None:
    assert parse_range(header, 10) is None


def test_no_range_header_or_empty_content_means_the_whole_thing() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=0-1", 0) is None
    assert parse_range("bytes=-1", 0) is None


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=10-20", "bytes=-0", "bytes=50-60,-0"])
def test_unsatisfiable_ranges_are_416_with_the_size(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, 10)
    error = info.value
    assert isinstance(error, FhirbinError)
    assert error.status == 416
    assert error.code == "value"
    assert error.expression == "http.Range"
    assert error.headers == {"Content-Range": "bytes */10"}


def test_more_than_a_hundred_ranges_are_ignored() -> None:
    allowed = "bytes=" + ",".join(f"{i}-{i}" for i in range(MAX_RANGES))
    assert parse_range(allowed, 1000) == [(i, i + 1) for i in range(MAX_RANGES)]
    too_many = "bytes=" + ",".join(f"{i}-{i}" for i in range(MAX_RANGES + 1))
    assert parse_range(too_many, 1000) is None


VERSION_3_AT = datetime(2024, 5, 6, 10, 0, 0, 250000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (None, True),
        (etag(3), True),
        ('"3"', True),
        ('W/"2"', False),
        ('W/"3", W/"4"', False),  # If-Range takes one validator
        ("W/3", False),
        (http_date(VERSION_3_AT), True),  # equal to the second
        ("Mon, 06 May 2024 10:00:01 GMT", False),  # later is not equal
        ("Mon, 06 May 2024 09:59:59 GMT", False),
        ("garbage", False),
        ("", False),
    ],
)
def test_if_range_names_this_version_or_its_exact_last_modified(
    header: str | None, ok: bool
) -> None:
    assert if_range_ok(header, 3, VERSION_3_AT) is ok


def test_content_range_is_inclusive() -> None:
    assert content_range(0, 100, 1000) == "bytes 0-99/1000"
    assert content_range(999, 1000, 1000) == "bytes 999-999/1000"
    for bad in [(0, 0, 10), (5, 4, 10), (0, 11, 10), (-1, 2, 10)]:
        with pytest.raises(ValueError, match="bad range"):
            content_range(*bad)


def test_multipart_framing_and_length_match_the_assembled_body() -> None:
    content = bytes(range(256)) * 4
    ranges = [(0, 10), (500, 1024), (3, 4)]
    boundary = "THIS_STRING_SEPARATES"
    heads, closing, length = multipart_byteranges(ranges, len(content), "image/png", boundary)
    body = b"".join(head + content[s:e] for head, (s, e) in zip(heads, ranges, strict=True))
    body += closing
    assert len(body) == length
    assert heads[0] == (
        b"--THIS_STRING_SEPARATES\r\nContent-Type: image/png\r\n"
        b"Content-Range: bytes 0-9/1024\r\n\r\n"
    )
    assert heads[1].startswith(b"\r\n--THIS_STRING_SEPARATES\r\n")
    assert b"Content-Range: bytes 500-1023/1024\r\n\r\n" in heads[1]
    assert closing == b"\r\n--THIS_STRING_SEPARATES--\r\n"
    assert (
        multipart_content_type(boundary) == "multipart/byteranges; boundary=THIS_STRING_SEPARATES"
    )


def test_multipart_body_parses_back_into_the_ranges() -> None:
    import email.parser
    import email.policy

    content = b"0123456789abcdefghij"
    ranges = [(0, 3), (10, 20)]
    boundary = new_boundary()
    heads, closing, _ = multipart_byteranges(ranges, len(content), "text/plain", boundary)
    body = b"".join(head + content[s:e] for head, (s, e) in zip(heads, ranges, strict=True))
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {multipart_content_type(boundary)}\r\n\r\n".encode() + body + closing
    )
    parts = list(message.iter_parts())
    assert [p.get_payload(decode=True) for p in parts] == [b"012", b"abcdefghij"]
    assert [p["Content-Range"] for p in parts] == ["bytes 0-2/20", "bytes 10-19/20"]


def test_boundaries_are_fresh_and_legal() -> None:
    first, second = new_boundary(), new_boundary()
    assert first != second
    assert re.fullmatch(r"[0-9a-f]{32}", first)


@pytest.mark.parametrize(
    ("content_type", "boundary"), [("a/b\r\nX: y", "b"), ("a/b", ""), ("a/b", "x" * 71)]
)
def test_multipart_refuses_header_injection_and_bad_boundaries(
    content_type: str, boundary: str
) -> None:
    with pytest.raises(ValueError, match="multipart"):
        multipart_byteranges([(0, 1)], 2, content_type, boundary)


@given(
    st.text(alphabet="bytes=0123456789-, \t", max_size=40), st.integers(min_value=0, max_value=50)
)
def test_any_range_header_is_served_ignored_or_416_never_a_crash(header: str, size: int) -> None:
    result = run(header, size)
    assert result is None or result == "416" or isinstance(result, list)
