"""The `fhirbin` command's own output: what an operator reads and what scripts parse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fhirbin.cli import cli


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("FHIRBIN_DATABASE_URL", "FHIRBIN_STORAGE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FHIRBIN_DATA_DIR", str(tmp_path / "data"))
    return CliRunner()


def test_client_list_off_a_terminal_prints_whole_ids_and_the_auth_method(
    runner: CliRunner, tmp_path: Path
) -> None:
    made = runner.invoke(cli, ["client", "create", "a-rather-long-client-name", "--scope",
                               "system/Binary.rs", "--json"])  # fmt: skip
    assert made.exit_code == 0, made.output
    client_id = json.loads(made.stdout)["client_id"]
    jwks = tmp_path / "keys.json"
    jwks.write_text(
        json.dumps(
            {
                "keys": [
                    {
                        "kty": "EC",
                        "crv": "P-256",
                        "kid": "k1",
                        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
                    }
                ]
            }
        )
    )
    keyed = runner.invoke(cli, ["client", "create", "keyed", "--scope", "system/Binary.rs",
                                "--jwks-file", str(jwks), "--json"])  # fmt: skip
    assert keyed.exit_code == 0, keyed.output
    listed = runner.invoke(cli, ["client", "list"])  # CliRunner's stdout is not a terminal
    assert listed.exit_code == 0, listed.output
    lines = [line.split("\t") for line in listed.stdout.splitlines()]
    assert lines[0] == ["client_id", "name", "auth", "scope", "created", "status"]
    rows = {row[0]: row for row in lines[1:]}
    assert rows[client_id][1:4] == [
        "a-rather-long-client-name",
        "client_secret",
        "system/Binary.rs",
    ]
    assert [row[2] for row in rows.values()].count("private_key_jwt") == 1
    assert "fhirbin: catalogue SQLite" in listed.stderr  # says which data it used


def test_a_scope_that_grants_nothing_here_is_kept_with_a_warning(runner: CliRunner) -> None:
    made = runner.invoke(cli, ["client", "create", "app", "--scope",
                               "system/Binary.rs patient/Observation.rs", "--json"])  # fmt: skip
    assert made.exit_code == 0, made.output
    assert "warning: patient/Observation.rs grants nothing on this server" in made.stderr
    assert json.loads(made.stdout)["scope"] == "system/Binary.rs patient/Observation.rs"


def test_keys_rotate_adds_a_key_and_list_shows_both(runner: CliRunner) -> None:
    assert runner.invoke(cli, ["migrate"]).exit_code == 0
    first = runner.invoke(cli, ["keys", "list"])
    assert first.exit_code == 0, first.output
    assert first.stdout == ""  # no key until a server or a rotation makes one
    rotated = runner.invoke(cli, ["keys", "rotate"])
    assert rotated.exit_code == 0, rotated.output
    kid = rotated.stdout.split()[-1]
    listed = runner.invoke(cli, ["keys", "list"]).stdout
    assert listed.startswith(kid + "\t")


def test_serve_stops_at_start_on_an_unknown_inspection_rule(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FHIRBIN_INSPECT_ALLOW", "pdf-javascript,no-such-rule")
    result = runner.invoke(cli, ["serve", "--port", "1"])
    assert result.exit_code != 0
    assert "FHIRBIN_INSPECT_ALLOW" in result.output
    assert "no-such-rule" in result.output
