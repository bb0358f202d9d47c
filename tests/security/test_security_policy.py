"""Deny list, allow list and the mismatch rule: refusals are 415 and say what was found."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhirbin.config import SettingsError, load_settings
from fhirbin.errors import UnsupportedMediaType
from fhirbin.runtime import type_policy
from fhirbin.security.policy import EXECUTABLES, TypePolicy, parse_types
from fhirbin.security.sniff import sniff
from tests.security import samples


def policy(**overrides: object) -> TypePolicy:
    return type_policy(load_settings({}, {"data_dir": Path("unused"), **overrides}))


def check(p: TypePolicy, declared: str, content: bytes) -> None:
    p.check_declared(declared)
    p.check_content(declared, sniff(content))


def test_defaults_deny_executables_and_reject_mismatches() -> None:
    p = policy()
    assert p.reject_mismatch
    assert p.sniffs
    assert "application/vnd.microsoft.portable-executable" in p.deny
    assert "text/x-shellscript" in p.deny
    assert p.allow == ()


@pytest.mark.parametrize(
    "declared",
    [
        "application/x-msdownload",
        "application/x-dosexec",
        "application/vnd.microsoft.portable-executable",
        "application/x-executable",
        "application/x-mach-binary",
        "application/x-sh",
        "text/javascript",
        "application/javascript; charset=utf-8",
        "Application/X-MSDownload",
        "application/hta",
        "application/java-archive",
        "application/wasm",
    ],
)
def test_a_declared_executable_is_refused_before_any_byte_is_read(declared: str) -> None:
    with pytest.raises(UnsupportedMediaType, match="executables and scripts are refused"):
        policy().check_declared(declared)


@pytest.mark.parametrize(
    ("declared", "content", "found"),
    [
        ("application/pdf", samples.PE, "application/vnd.microsoft.portable-executable"),
        ("application/pdf", samples.ELF, "application/x-executable"),
        ("application/octet-stream", samples.MACH_O, "application/x-mach-binary"),
        ("text/plain", samples.SHELL, "text/x-shellscript"),
        ("text/plain", samples.NODE_SCRIPT, "application/javascript"),
        ("text/plain", samples.BATCH, "text/x-msdos-batch"),
    ],
)
def test_sniffed_executables_are_refused_whatever_the_label(
    declared: str, content: bytes, found: str
) -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        check(policy(), declared, content)
    assert info.value.status == 415
    assert f"declared {declared} but the content is {found}" in info.value.diagnostics


def test_a_mismatch_names_both_types() -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        check(policy(), "image/png", samples.PDF)
    assert "declared image/png but the content is application/pdf" in info.value.diagnostics


def test_type_mismatch_accept_lets_a_contradiction_in_but_not_an_executable() -> None:
    p = policy(type_mismatch="accept")
    check(p, "image/png", samples.PDF)
    with pytest.raises(UnsupportedMediaType):
        check(p, "application/pdf", samples.PE)


def test_an_empty_deny_list_lets_executables_in_only_under_their_own_name() -> None:
    p = policy(deny_types="")
    check(p, "application/vnd.microsoft.portable-executable", samples.PE)
    check(p, "application/octet-stream", samples.PE)
    with pytest.raises(UnsupportedMediaType, match="declared application/pdf"):
        check(p, "application/pdf", samples.PE)  # still a mismatch


def test_nothing_to_sniff_when_nothing_is_denied_and_mismatches_are_accepted() -> None:
    assert not policy(deny_types="", type_mismatch="accept").sniffs


def test_allow_list_with_wildcards() -> None:
    p = policy(allow_types="application/pdf, image/*")
    check(p, "application/pdf", samples.PDF)
    check(p, "image/png", samples.PNG)
    check(p, "image/jpg", samples.JPEG)
    with pytest.raises(UnsupportedMediaType, match="FHIRBIN_ALLOW_TYPES"):
        p.check_declared("text/plain")


def test_deny_wins_over_allow() -> None:
    p = policy(allow_types="*/*", deny_types="executables, text/html")
    with pytest.raises(UnsupportedMediaType, match="FHIRBIN_DENY_TYPES"):
        p.check_declared("text/html; charset=utf-8")
    with pytest.raises(UnsupportedMediaType, match="content is text/html"):
        check(p, "application/octet-stream", samples.HTML)


def test_custom_deny_entries_and_wildcards() -> None:
    p = policy(deny_types="video/*")
    with pytest.raises(UnsupportedMediaType, match="this server refuses that type"):
        p.check_declared("video/mp4")
    check(p, "application/pdf", samples.PDF)
    check(p, "application/octet-stream", samples.PE)  # executables are no longer denied


def test_unidentified_content_is_never_denied() -> None:
    check(policy(), "application/octet-stream", samples.COM_LOOKALIKE)


def test_parse_types_expands_executables_and_rejects_garbage() -> None:
    assert len(parse_types("executables", "X")) <= len(EXECUTABLES)
    assert parse_types(" image/* , Image/JPG ,", "X") == ("image/*", "image/jpeg")
    for bad in ("pdf", "image/", "*/png", "a b/c", "text/html;x"):
        with pytest.raises(SettingsError, match="FHIRBIN_DENY_TYPES"):
            parse_types(bad, "FHIRBIN_DENY_TYPES")
