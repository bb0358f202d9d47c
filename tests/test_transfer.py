"""The transfer client's rules that need no server (src/fhirbin/transfer.py); the commands
themselves are tested against `fhirbin serve` in tests/e2e/test_e2e_transfer.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhirbin.transfer import TransferError, guess_type, plan_import, read_manifest


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("scan", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64), "image/png"),
        ("report.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "application/pdf"),
        ("notes.txt", b"plain words\n", "text/plain"),
        ("data.csv", b"a,b\n1,2\n", "text/csv"),
        ("blob", b"\xde\xad\xbe\xef\x17" * 50, "application/octet-stream"),
    ],
)
def test_the_type_is_guessed_from_bytes_then_name(
    tmp_path: Path, name: str, data: bytes, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    assert guess_type(path) == expected


def test_a_torn_last_line_is_ignored_and_the_last_line_of_an_id_wins(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.ndjson"
    manifest.write_text('{"id": "a", "version": 1}\n{"id": "a", "version": 2}\n{"id": "b", "ver')
    assert read_manifest(manifest) == {"a": {"id": "a", "version": 2}}


def test_an_export_manifest_names_files_inside_its_folder_only(tmp_path: Path) -> None:
    (tmp_path / "manifest.ndjson").write_text(json.dumps({"id": "a", "file": "../secret"}) + "\n")
    with pytest.raises(TransferError, match="bad file entry"):
        plan_import(tmp_path)


def test_a_plain_folder_is_every_file_but_the_journals(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"b")
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "fhirbin-import.ndjson").write_text("")
    assert plan_import(tmp_path) == [(tmp_path / "a", None), (tmp_path / "sub" / "b", None)]
