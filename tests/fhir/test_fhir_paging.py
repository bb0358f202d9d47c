"""fhirbin.fhir.paging: opaque page cursors and page links."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhirbin.errors import BadRequest
from fhirbin.fhir.paging import Cursor, decode_cursor, encode_cursor, page_links
from fhirbin.fhir.search import self_link

BASE = "https://fhir.example.org/fhir"
ID = "0b7e3c8e-4f5a-4c2e-9d1a-3f2b6c7d8e9f"

ids = st.from_regex(r"\A[A-Za-z0-9\-.]{1,64}\Z")
instants = st.integers(min_value=-(2**62), max_value=2**62)
versions = st.integers(min_value=1, max_value=10**17)


@given(st.sampled_from(["next", "prev"]), instants, ids, versions)
def test_a_cursor_round_trips(direction: str, last_updated_us: int, id: str, version: int) -> None:
    token = encode_cursor(direction, last_updated_us, id, version)
    assert decode_cursor(token) == Cursor(direction, last_updated_us, id, version)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)  # URL-safe, no padding
    assert encode_cursor(direction, last_updated_us, id, version) == token  # stable


def test_a_cursor_is_compact() -> None:
    assert len(encode_cursor("next", 1_732_620_827_123_456, ID, 12)) <= 90


def test_next_and_prev_cursors_differ() -> None:
    assert encode_cursor("next", 1, "a", 1) != encode_cursor("prev", 1, "a", 1)


def _flip(token: str, i: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    replacement = alphabet[(alphabet.index(token[i]) + 1) % len(alphabet)]
    return token[:i] + replacement + token[i + 1 :]


def test_changing_any_character_of_a_cursor_is_detected() -> None:
    token = encode_cursor("next", 1_732_620_827_123_456, ID, 3)
    for i in range(len(token)):
        with pytest.raises(BadRequest) as info:
            decode_cursor(_flip(token, i))
        assert info.value.expression == "http._page"


@given(st.data())
def test_truncated_or_extended_cursors_are_rejected(data: st.DataObject) -> None:
    token = encode_cursor("prev", 42, "abc", 7)
    cut = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    with pytest.raises(BadRequest):
        decode_cursor(token[:cut])
    extra = data.draw(st.text(alphabet="Aa0-_=", min_size=1, max_size=4))
    with pytest.raises(BadRequest):
        decode_cursor(token + extra)


@pytest.mark.parametrize(
    "token", ["", "abc", "!!!!", "é" * 8, "A" * 201, "AAAAAAAAAAAAAAAAAAAA", "a b", "1n5.1.a"]
)
def test_garbage_cursors_are_400(token: str) -> None:
    with pytest.raises(BadRequest, match="_page") as info:
        decode_cursor(token)
    assert info.value.status == 400
    assert info.value.expression == "http._page"


@pytest.mark.parametrize(
    ("direction", "id", "version"),
    [("up", "a", 1), ("next", "a_b", 1), ("next", "", 1), ("next", "a", 0), ("next", "a" * 65, 1)],
)
def test_encoding_a_cursor_for_something_that_is_not_a_version_is_a_bug(
    direction: str, id: str, version: int
) -> None:
    with pytest.raises(ValueError, match=r"cursor|direction"):
        encode_cursor(direction, 0, id, version)


def test_page_links_come_in_order_self_first_next_previous() -> None:
    links = page_links(
        BASE,
        "Binary",
        [("_id", "a,b"), ("_count", "2"), ("_lastUpdated", "gt2024-01-01T00:00:00+01:00")],
        2,
        first_cursor=None,
        next_cursor="NEXT",
        prev_cursor="PREV",
        self_cursor="SELF",
    )
    query = "_id=a,b&_lastUpdated=gt2024-01-01T00%3A00%3A00%2B01%3A00&_count=2"
    assert links == [
        ("self", f"{BASE}/Binary?{query}&_page=SELF"),
        ("first", f"{BASE}/Binary?{query}"),
        ("next", f"{BASE}/Binary?{query}&_page=NEXT"),
        ("previous", f"{BASE}/Binary?{query}&_page=PREV"),
    ]


def test_first_page_links_without_cursors_have_self_and_first_only() -> None:
    links = page_links(
        BASE,
        "Binary",
        [],
        20,
        first_cursor=None,
        next_cursor=None,
        prev_cursor=None,
        self_cursor=None,
    )
    assert links == [("self", f"{BASE}/Binary?_count=20"), ("first", f"{BASE}/Binary?_count=20")]


def test_a_first_cursor_is_carried_when_given() -> None:
    links = dict(
        page_links(
            BASE,
            "Binary",
            [],
            5,
            first_cursor="F",
            next_cursor=None,
            prev_cursor=None,
            self_cursor=None,
        )
    )
    assert links["first"] == f"{BASE}/Binary?_count=5&_page=F"


def test_page_links_encode_parameters_like_the_self_link_and_decode_back() -> None:
    used = [("_id", "a b&c=d#/é"), ("_id", "x\\,y")]
    token = encode_cursor("next", 5, "a", 1)
    (self_url,) = [
        url
        for rel, url in page_links(
            BASE,
            "Binary",
            used,
            3,
            first_cursor=None,
            next_cursor=None,
            prev_cursor=None,
            self_cursor=token,
        )
        if rel == "self"
    ]
    assert self_url.startswith(self_link(BASE, used) + "&_count=3&_page=")
    query = parse_qsl(urlsplit(self_url).query)
    assert query == [*used, ("_count", "3"), ("_page", token)]
    assert decode_cursor(dict(query)["_page"]) == Cursor("next", 5, "a", 1)


def test_page_links_work_for_history_paths() -> None:
    links = page_links(
        BASE,
        "Binary/abc/_history",
        [("_since", "2024-01-01T00:00:00Z")],
        10,
        first_cursor=None,
        next_cursor="N",
        prev_cursor=None,
        self_cursor=None,
    )
    assert [rel for rel, _ in links] == ["self", "first", "next"]
    assert (
        links[2][1]
        == f"{BASE}/Binary/abc/_history?_since=2024-01-01T00%3A00%3A00Z&_count=10&_page=N"
    )
