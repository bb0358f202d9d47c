"""fhirbin.fhir.ids: the R4 id rule, server-assigned ids and version ids."""

from __future__ import annotations

import time
import uuid

import pytest

from fhirbin.errors import BadRequest
from fhirbin.fhir.ids import (
    ID_RE,
    TimeOrderedIds,
    check_id,
    check_writable_id,
    is_valid_id,
    is_valid_version_id,
    new_id,
    version_number,
)

VALID = ["a", "A", "0", "a-b.c", "ABC-123.xyz", "x" * 64, "6f1c1e0e-5d0e-4c8e-9a34-0d7c2b4e9f10"]
INVALID = [
    "",
    "x" * 65,
    "a_b",
    "a b",
    "a/b",
    "a%2Fb",
    "a~b",
    "é",
    "a\n",  # $ would accept this trailing newline; \Z does not
    "\na",
    "urn:uuid:6f1c1e0e-5d0e-4c8e-9a34-0d7c2b4e9f10",
]


@pytest.mark.parametrize("value", VALID)
def test_valid_ids_are_accepted_and_returned_unchanged(value: str) -> None:
    assert is_valid_id(value)
    assert ID_RE.match(value)
    assert check_id(value) == value


@pytest.mark.parametrize("value", INVALID)
def test_invalid_ids_are_rejected_with_400(value: str) -> None:
    assert not is_valid_id(value)
    with pytest.raises(BadRequest) as info:
        check_id(value, expression="http.id")
    assert info.value.status == 400
    assert info.value.expression == "http.id"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "is empty"),
        ("x" * 65, "65 characters long"),
        ("a_b", "'_'"),
        ("a b~", "' ', '~'"),
        ("é", r"'\xe9'"),
    ],
)
def test_check_id_says_what_is_wrong(value: str, says: str) -> None:
    with pytest.raises(BadRequest) as info:
        check_id(value)
    assert says in info.value.diagnostics


def test_ids_are_case_sensitive_values_not_folded() -> None:
    assert check_id("AbC") == "AbC"
    assert check_writable_id("AbC") == "AbC"


@pytest.mark.parametrize("value", [".", ".."])
def test_dot_segments_are_refused_as_writable_ids(value: str) -> None:
    assert is_valid_id(value)  # the regex allows them...
    with pytest.raises(BadRequest, match="dot-segments"):
        check_writable_id(value)  # ...but a URL could never address them


@pytest.mark.parametrize("value", ["...", ".a", "a..b"])
def test_ids_with_dots_that_are_not_dot_segments_are_writable(value: str) -> None:
    assert check_writable_id(value) == value


def test_writable_id_still_applies_the_id_rule() -> None:
    with pytest.raises(BadRequest, match="65 characters"):
        check_writable_id("x" * 65, expression="Binary.id")


def test_new_ids_are_unique_lowercase_uuids_that_are_valid_ids() -> None:
    ids = {new_id() for _ in range(100)}
    assert len(ids) == 100
    for value in ids:
        assert is_valid_id(value)
        assert value == value.lower()
        assert len(value) == 36


@pytest.mark.parametrize(("value", "valid"), [("1", True), ("abc", True), ("_x", False)])
def test_version_ids_have_the_id_format(value: str, valid: bool) -> None:
    assert is_valid_version_id(value) is valid


@pytest.mark.parametrize(
    ("value", "number"),
    [("1", 1), ("12", 12), ("0", None), ("007", None), ("-1", None), ("abc", None), ("", None)],
)
def test_version_number_reads_only_canonical_decimal_versions(
    value: str, number: int | None
) -> None:
    assert version_number(value) == number


def test_time_ordered_ids_are_uuidv7_fhir_ids_unique_and_ordered() -> None:
    ids = TimeOrderedIds()
    first = [ids.next() for _ in range(20_000)]
    time.sleep(0.002)
    later = ids.next()
    other = TimeOrderedIds().next()
    assert len({*first, later, other}) == len(first) + 2
    for value in (first[0], first[-1], later, other):
        parsed = uuid.UUID(value)
        assert str(parsed) == value  # lowercase, canonical
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert is_valid_id(value)
    assert later > max(first)  # a later millisecond sorts after
