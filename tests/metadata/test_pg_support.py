"""The test cluster harness itself (tests/pg_support.py): what the PostgreSQL tests stand on."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pg_support import PostgresCluster, PostgresMissing, find_binaries


def test_missing_binaries_fail_with_how_to_install_them(tmp_path: Path) -> None:
    (tmp_path / "15" / "bin").mkdir(parents=True)  # a folder without the programs
    with pytest.raises(PostgresMissing, match=r"install Debian's `postgresql` package"):
        find_binaries(tmp_path)


def test_the_newest_major_version_is_used(tmp_path: Path) -> None:
    for major in ("9", "15", "13"):
        folder = tmp_path / major / "bin"
        folder.mkdir(parents=True)
        (folder / "initdb").touch()
        (folder / "pg_ctl").touch()
    assert find_binaries(tmp_path) == tmp_path / "15" / "bin"


def test_databases_are_fresh_and_owned_by_a_role_that_is_not_a_superuser(
    postgres: PostgresCluster,
) -> None:
    first, second = postgres.new_database(), postgres.new_database()
    assert first != second
    name = first.rsplit("/", 1)[1]
    owner = postgres.sql(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()",
        database=name,
    ).strip()
    assert owner == "fhirbin"
    assert postgres.sql("SELECT rolsuper FROM pg_roles WHERE rolname = 'fhirbin'").strip() == "f"
    tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
    assert postgres.sql(tables, database=name).strip() == "0"
