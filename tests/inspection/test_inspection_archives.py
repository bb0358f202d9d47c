"""ZIP edge cases the corpus does not cover: what cannot be seen is not a crash, and a check that
fails unexpectedly refuses (fail closed) unless that rule is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhirbin.inspection import inspector as inspector_module
from fhirbin.inspection.archives import check_zip
from fhirbin.inspection.inspector import Inspector
from fhirbin.inspection.rules import Limits
from tests.inspection.corpus import png, zip_bytes


def written(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "sample"
    path.write_bytes(data)
    return path


def test_an_encrypted_entry_is_accepted_unseen(tmp_path: Path) -> None:
    data = bytearray(zip_bytes(("secret.txt", b"x" * 100)))
    data[6] |= 1  # general purpose flag, local header: encrypted
    central = data.index(b"PK\x01\x02")
    data[central + 8] |= 1  # and in the central directory
    assert check_zip(written(tmp_path, bytes(data)), Limits()) is None


def test_corrupt_compressed_data_is_not_a_crash(tmp_path: Path) -> None:
    data = bytearray(zip_bytes(("a.txt", b"hello world " * 100)))
    start = data.index(b"a.txt") + len(b"a.txt")
    data[start : start + 8] = b"\xff" * 8
    assert check_zip(written(tmp_path, bytes(data)), Limits()) is None


def test_a_check_that_crashes_refuses_unless_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: Path, max_pixels: int) -> None:
        raise MemoryError("parser blew up")

    monkeypatch.setattr(inspector_module, "check_image", broken)
    path = written(tmp_path, png(10, 10))
    finding = Inspector(Limits(), tmp_path).check({"image"}, path)
    assert finding is not None
    assert finding.rule == "inspection-failed"
    allowed = Limits(allowed=frozenset({"inspection-failed"}))
    assert Inspector(allowed, tmp_path).check({"image"}, path) is None
