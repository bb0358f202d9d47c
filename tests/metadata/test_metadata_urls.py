"""Database URLs as operators write them (metadata/engine.py): normalised to the drivers fhirbin
uses, libpq's parameters translated for asyncpg, passwords never shown."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from fhirbin.faults import DependencyUnavailable
from fhirbin.metadata.engine import database_display, normalise_url, postgres_connect_args
from fhirbin.metadata.postgres import PostgresMetadataStore
from fhirbin.metadata.sql import SqlMetadataStore
from tests.metadata.support import version
from tests.pg_support import PASSWORD, PostgresCluster

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:pw@db.example:5433/cat",
        "postgres://u:pw@db.example:5433/cat",
        "postgresql+asyncpg://u:pw@db.example:5433/cat",
        "postgresql+psycopg://u:pw@db.example:5433/cat",
        "postgres+psycopg2://u:pw@db.example:5433/cat",
        "  postgresql://u:pw@db.example:5433/cat\n",
    ],
)
def test_every_postgresql_spelling_means_asyncpg(url: str) -> None:
    parsed = normalise_url(url)
    assert parsed.drivername == "postgresql+asyncpg"
    assert (parsed.username, parsed.password, parsed.host, parsed.port, parsed.database) == (
        "u",
        "pw",
        "db.example",
        5433,
        "cat",
    )


def test_sqlite_urls_mean_aiosqlite_and_other_databases_are_refused() -> None:
    assert normalise_url("sqlite:////var/lib/fhirbin/c.db").drivername == "sqlite+aiosqlite"
    assert normalise_url("sqlite+aiosqlite://").drivername == "sqlite+aiosqlite"
    with pytest.raises(ValueError, match="unsupported database") as refused:
        normalise_url("mysql://root:hunter2@db/cat")
    assert "hunter2" not in str(refused.value)


def test_libpq_parameters_become_asyncpg_arguments_and_others_pass_through() -> None:
    url = normalise_url("postgres://u:pw@h/db?sslmode=require&connect_timeout=7&command_timeout=30")
    stripped, args = postgres_connect_args(url)
    assert dict(stripped.query) == {"command_timeout": "30"}
    assert args == {"timeout": 7.0, "ssl": "require"}
    _, defaults = postgres_connect_args(normalise_url("postgresql://u@h/db"))
    assert defaults == {"timeout": 3.0}
    with pytest.raises(ValueError, match="sslmode"):
        postgres_connect_args(normalise_url("postgresql://u@h/db?sslmode=sometimes"))


def test_certificate_files_build_a_context_that_verifies_as_libpq_would(tmp_path: Path) -> None:
    ca = ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt"
    full = normalise_url(f"postgresql://u@h/db?sslmode=verify-full&sslrootcert={ca}")
    context = postgres_connect_args(full)[1]["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    chain_only = normalise_url(f"postgresql://u@h/db?sslmode=verify-ca&sslrootcert={ca}")
    context = postgres_connect_args(chain_only)[1]["ssl"]
    assert not context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_the_display_masks_the_password_wherever_it_is() -> None:
    shown = database_display("postgresql://fhirbin:s3cret@db:5432/cat?sslmode=require")
    assert shown == "postgresql://fhirbin:***@db:5432/cat?sslmode=require"
    shown = database_display("postgresql://fhirbin@db/cat?password=s3cret")
    assert "s3cret" not in shown
    assert database_display("sqlite+aiosqlite:////data/fhirbin.db") == (
        "sqlite+aiosqlite:////data/fhirbin.db"
    )
    assert "s3cret" not in database_display("::not a url s3cret")


async def test_a_postgres_url_with_sslmode_reaches_the_driver(postgres: PostgresCluster) -> None:
    # The test server has no TLS: "disable" connects, "require" is refused by the driver.
    url = postgres.new_database().replace("postgresql://", "postgres://")
    store = await SqlMetadataStore.open(f"{url}?sslmode=disable")
    try:
        assert type(store) is PostgresMetadataStore  # its hot reads use the same arguments
        await store.add_version(version())
        assert await store.current("a") == version()
        assert await store.get_client("nobody") is None
    finally:
        await store.close()
    with pytest.raises(DependencyUnavailable) as refused:
        await SqlMetadataStore.open(f"{url}?sslmode=require")
    assert PASSWORD not in str(refused.value)
