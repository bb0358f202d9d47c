"""SMART scope parsing, checking and granting (fhirbin.auth.scopes)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhirbin.auth.scopes import (
    SUPPORTED_SCOPES,
    ScopeGrant,
    allows,
    grant,
    needed_scope,
    parse_scope,
    parse_scopes,
    validate_registration_scope,
)

# --- parse_scope ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("system/Binary.rs", ScopeGrant("system", "Binary", frozenset("rs"), v1=False)),
        ("system/*.cruds", ScopeGrant("system", "*", frozenset("cruds"), v1=False)),
        ("system/Binary.cud", ScopeGrant("system", "Binary", frozenset("cud"), v1=False)),
        ("user/Binary.r", ScopeGrant("user", "Binary", frozenset("r"), v1=False)),
        ("patient/Observation.s", ScopeGrant("patient", "Observation", frozenset("s"), v1=False)),
        ("system/Binary.cs", ScopeGrant("system", "Binary", frozenset("cs"), v1=False)),
    ],
)
def test_v2_scope_parses_to_its_letters(text: str, expected: ScopeGrant) -> None:
    assert parse_scope(text) == expected


@pytest.mark.parametrize(
    ("text", "letters"),
    [("system/Binary.read", "rs"), ("system/Binary.write", "cud"), ("system/*.*", "cruds")],
)
def test_v1_scope_maps_to_v2_letters_and_is_marked_v1(text: str, letters: str) -> None:
    parsed = parse_scope(text)
    assert parsed is not None
    assert parsed.actions == frozenset(letters)
    assert parsed.v1 is True


@pytest.mark.parametrize(
    "text",
    [
        "system/Binary.sr",  # out of order
        "system/Binary.rr",  # repeated
        "system/Binary.dus",  # out of order
        "system/Binary.",  # empty suffix
        "system/Binary",  # no suffix
        "system/Binary.x",
        "system/Binary.rx",
        "system/Binary.READ",
        "system/Binary.Read",
        "system/Binary.rs?category=x",  # query-suffix scopes are not supported yet
        "system/Binary.read?x=y",
        "admin/Binary.rs",  # unknown context
        "System/Binary.rs",
        "system/binary.rs",  # resource types start upper case
        "system/B.rs",
        "system/Bin ary.rs",
        "system/**.rs",
        "openid",
        "fhirUser",
        "launch/patient",
        "offline_access",
        "",
        " system/Binary.rs",
        "system/Binary.rs ",
    ],
)
def test_unsupported_scope_parses_to_none(text: str) -> None:
    assert parse_scope(text) is None


def test_parse_scopes_drops_unknown_items_and_keeps_order() -> None:
    parsed = parse_scopes("openid system/Binary.r  launch system/*.s system/Binary.sr")
    assert [str(g) for g in parsed] == ["system/Binary.r", "system/*.s"]


def test_scope_grant_str_writes_letters_in_cruds_order() -> None:
    assert str(ScopeGrant("system", "Binary", frozenset("sdc"), v1=False)) == "system/Binary.cds"


# --- allows --------------------------------------------------------------------------------------


def test_allows_the_letters_of_a_v2_scope_only() -> None:
    assert allows("system/Binary.rs", "r")
    assert allows("system/Binary.rs", "s")
    assert not allows("system/Binary.rs", "c")
    assert not allows("system/Binary.rs", "u")
    assert not allows("system/Binary.rs", "d")


def test_write_does_not_imply_read() -> None:
    assert allows("system/Binary.cud", "c")
    assert not allows("system/Binary.cud", "r")
    assert not allows("system/Binary.write", "s")


@pytest.mark.parametrize(
    ("scope", "yes", "no"),
    [
        ("system/Binary.read", "rs", "cud"),
        ("system/Binary.write", "cud", "rs"),
        ("system/*.*", "cruds", ""),
        ("system/Binary.*", "cruds", ""),
    ],
)
def test_v1_scopes_allow_their_v2_equivalent(scope: str, yes: str, no: str) -> None:
    assert all(allows(scope, a) for a in yes)
    assert not any(allows(scope, a) for a in no)


def test_scopes_combine_as_a_union() -> None:
    assert allows("system/Binary.r system/Binary.c", "c")
    assert allows("system/Binary.r system/Binary.c", "r")
    assert not allows("system/Binary.r system/Binary.c", "d")


def test_wildcard_resource_covers_binary_but_other_types_do_not() -> None:
    assert allows("system/*.r", "r")
    assert not allows("system/Patient.r", "r")
    assert allows("system/Patient.r", "r", resource="Patient")


def test_allows_only_the_given_contexts() -> None:
    assert not allows("user/Binary.rs", "r")
    assert not allows("patient/Binary.rs", "r")
    assert allows("patient/Binary.rs", "r", contexts=("patient", "user"))
    assert not allows("system/Binary.rs", "r", contexts=("patient",))


def test_unparseable_scopes_allow_nothing() -> None:
    for action in "cruds":
        assert not allows("system/Binary.sr system/Binary.dus openid system/Binary.r?x=y", action)


@pytest.mark.parametrize("action", ["", "x", "rs", "read", "R"])
def test_allows_rejects_an_action_that_is_not_one_smart_letter(action: str) -> None:
    with pytest.raises(ValueError, match="action"):
        allows("system/*.cruds", action)


# --- grant ---------------------------------------------------------------------------------------


def test_blank_request_grants_the_registered_scopes_normalised() -> None:
    registered = "system/Binary.read  system/Binary.cs system/Binary.read"
    assert grant("", registered) == "system/Binary.read system/Binary.cs"
    assert grant("   ", registered) == "system/Binary.read system/Binary.cs"


def test_request_within_registration_is_granted_as_requested() -> None:
    assert grant("system/Binary.rs", "system/Binary.cruds") == "system/Binary.rs"


def test_request_is_narrowed_to_the_registered_letters() -> None:
    assert grant("system/Binary.cruds", "system/Binary.rs") == "system/Binary.rs"


def test_registered_wildcard_covers_a_concrete_type() -> None:
    assert grant("system/Binary.r", "system/*.rs") == "system/Binary.r"


def test_requested_wildcard_is_narrowed_to_the_registered_type() -> None:
    assert grant("system/*.rs", "system/Binary.rs") == "system/Binary.rs"


def test_requested_wildcard_splits_between_wildcard_and_typed_registrations() -> None:
    assert grant("system/*.cruds", "system/*.rs system/Binary.cud") == (
        "system/*.rs system/Binary.cud"
    )


def test_requested_wildcard_does_not_repeat_letters_the_wildcard_grant_carries() -> None:
    assert grant("system/*.rs", "system/*.r system/Binary.rs") == "system/*.r system/Binary.s"


def test_uncovered_scopes_are_dropped() -> None:
    assert grant("system/Binary.r system/Patient.r", "system/Binary.rs") == "system/Binary.r"
    assert grant("system/Binary.c", "system/Binary.rs") == ""


def test_context_must_match_the_registration() -> None:
    assert grant("user/Binary.rs", "system/Binary.cruds") == ""
    assert grant("patient/Binary.r", "patient/*.rs") == "patient/Binary.r"


def test_out_of_order_scope_is_never_granted() -> None:
    assert grant("system/Binary.sr", "system/*.cruds") == ""
    assert grant("system/Binary.sr system/Binary.s", "system/*.cruds") == "system/Binary.s"


def test_unparseable_requested_scopes_are_not_granted() -> None:
    requested = "openid launch/patient system/Binary.rs?x=y system/Binary.dus"
    assert grant(requested, "system/*.cruds") == ""


@pytest.mark.parametrize(
    ("requested", "registered", "expected"),
    [
        ("system/Binary.read", "system/Binary.cruds", "system/Binary.read"),
        ("system/Binary.write", "system/*.*", "system/Binary.write"),
        ("system/*.*", "system/*.cruds", "system/*.*"),
        ("system/Binary.read", "system/Binary.r", "system/Binary.r"),
        ("system/Binary.*", "system/Binary.rs", "system/Binary.rs"),
        ("system/*.read", "system/Binary.rs", "system/Binary.rs"),
    ],
)
def test_v1_form_is_kept_only_when_the_v1_scope_is_granted_entirely(
    requested: str, registered: str, expected: str
) -> None:
    assert grant(requested, registered) == expected


def test_granted_scopes_are_written_in_cruds_order_without_duplicates() -> None:
    assert grant("system/Binary.rs system/Binary.rs", "system/Binary.rs") == "system/Binary.rs"
    assert grant("system/Binary.cs system/Binary.rs", "system/Binary.cruds") == (
        "system/Binary.cs system/Binary.rs"
    )


_RESOURCES = ("Binary", "Patient", "*")
_CONTEXTS = ("system", "user", "patient")
_scope_items = st.one_of(
    st.builds(
        lambda c, r, letters: f"{c}/{r}.{''.join(a for a in 'cruds' if a in letters)}",
        st.sampled_from(_CONTEXTS),
        st.sampled_from(_RESOURCES),
        st.sets(st.sampled_from("cruds"), min_size=1),
    ),
    st.builds(
        lambda c, r, s: f"{c}/{r}.{s}",
        st.sampled_from(_CONTEXTS),
        st.sampled_from(_RESOURCES),
        st.sampled_from(["read", "write", "*", "sr", "dus", "rr", "rs?x=y", ""]),
    ),
    st.sampled_from(["openid", "launch/patient", "fhirUser"]),
)
_scope_strings = st.lists(_scope_items, max_size=6).map(" ".join)


def _permissions(scope: str) -> set[tuple[str, str, str]]:
    return {
        (context, resource, action)
        for context in _CONTEXTS
        for resource in _RESOURCES
        for action in "cruds"
        if allows(scope, action, resource, contexts=(context,))
    }


@given(requested=_scope_strings, registered=_scope_strings)
def test_grant_never_allows_more_than_registered(requested: str, registered: str) -> None:
    assert _permissions(grant(requested, registered)) <= _permissions(registered)


@given(requested=_scope_strings, registered=_scope_strings)
def test_grant_never_allows_more_than_requested(requested: str, registered: str) -> None:
    if requested.strip():
        assert _permissions(grant(requested, registered)) <= _permissions(requested)


@given(requested=_scope_strings, registered=_scope_strings)
def test_grant_allows_everything_both_requested_and_registered(
    requested: str, registered: str
) -> None:
    if requested.strip():
        both = _permissions(requested) & _permissions(registered)
        assert both <= _permissions(grant(requested, registered))


@given(requested=_scope_strings, registered=_scope_strings)
def test_granted_scope_string_is_well_formed(requested: str, registered: str) -> None:
    granted = grant(requested, registered)
    items = granted.split(" ") if granted else []
    assert all(parse_scope(item) is not None for item in items)
    assert len(items) == len(set(items))


# --- registration, needed scope, supported -------------------------------------------------------


def test_registration_scope_is_normalised() -> None:
    assert validate_registration_scope(" system/Binary.rs ") == "system/Binary.rs"
    assert validate_registration_scope("system/Binary.read system/*.cs  system/Binary.read") == (
        "system/Binary.read system/*.cs"
    )


@pytest.mark.parametrize("bad", ["system/Binary.sr", "openid", "system/Binary.rs?x=y"])
def test_registration_scope_names_the_bad_item(bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        validate_registration_scope(f"system/Binary.rs {bad}")


def test_registration_scope_must_not_be_blank() -> None:
    with pytest.raises(ValueError, match="at least one scope"):
        validate_registration_scope("  ")


def test_needed_scope_names_the_narrowest_system_scope() -> None:
    assert needed_scope("s") == "system/Binary.s"
    assert needed_scope("c", "Patient") == "system/Patient.c"
    with pytest.raises(ValueError, match="action"):
        needed_scope("read")


def test_every_supported_scope_parses() -> None:
    assert "system/Binary.cruds" in SUPPORTED_SCOPES
    for scope in SUPPORTED_SCOPES:
        parsed = parse_scope(scope)
        assert parsed is not None, scope
        assert parsed.context in ("system", "patient", "user")
        assert parsed.resource in ("Binary", "AuditEvent", "*")
