"""Schema migrations: bringing a catalogue database up to the schema this release needs.

The Alembic environment ships inside the package (``migrations/``) and is configured here in
code, so no alembic.ini is needed at runtime. An upgrade runs in one write transaction that first
makes every other upgrader of the database wait: on SQLite BEGIN IMMEDIATE, on PostgreSQL a
transaction-scoped advisory lock (``engine.lock_for_upgrade``). So processes starting together
take turns and all but the first find the schema already at head; upgrading an up-to-date
database does nothing. The lock is taken before Alembic runs: Alembic keeps its running
environment in module globals, so two upgrades must never be inside it at once in one process.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import anyio
import anyio.to_thread
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from fhirbin.metadata.engine import (
    database_display,
    lock_for_upgrade,
    migration_engine,
    write_transaction,
)
from fhirbin.metadata.failures import guarded

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    """The Alembic configuration of the packaged migrations (no file behind it)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Stated explicitly: without it Alembic warns that it falls back to legacy path splitting.
    config.set_main_option("path_separator", "os")
    return config


def head_revision() -> str:
    """The newest revision this release knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS}")
    return head


def _upgrade_on(connection: Connection) -> None:
    config = alembic_config()
    # env.py runs the revisions on this connection, inside the caller's transaction.
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


_LOCK_RETRIES = 5


async def upgrade(engine: AsyncEngine) -> None:
    """Upgrade the database behind ``engine`` to head, on the caller's event loop.

    Used by the store on its own engine, which also makes in-memory SQLite databases work.
    Failures to reach the database raise ``fhirbin.faults`` (failures.py).
    """
    with guarded(database_display(engine.url), engine.url.password):
        await _upgrade(engine)


async def _upgrade(engine: AsyncEngine) -> None:
    for attempt in range(_LOCK_RETRIES):
        try:
            async with write_transaction(engine) as connection:
                await lock_for_upgrade(connection)
                await connection.run_sync(_upgrade_on)
            return
        except OperationalError as error:
            # A brand-new SQLite file being set up by another process (its journal mode switch)
            # can answer "database is locked" without waiting for the busy timeout. Migrations
            # are idempotent: wait and run them again.
            if "locked" not in str(error) or attempt == _LOCK_RETRIES - 1:
                raise
            await anyio.sleep(0.2 * (attempt + 1))


async def schema_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at; None if it was never migrated."""
    async with engine.connect() as connection:
        return await connection.run_sync(_revision_of)


async def upgrade_url(url: str) -> None:
    """Upgrade the database at ``url`` to head, on the caller's event loop, through an
    unpooled engine without a statement time limit (``engine.migration_engine``)."""
    engine = migration_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


def migrate_sync(url: str) -> None:
    """Upgrade the database at ``url`` to head; for the command line.

    Runs its own event loop, so it must not be called from a thread that is running one: use
    ``migrate`` there.
    """
    asyncio.run(upgrade_url(url))


async def migrate(url: str) -> None:
    """Upgrade the database at ``url`` to head from async code.

    Alembic's work is synchronous (it imports the revision scripts and runs them), so it runs in
    a worker thread with its own event loop instead of stalling the caller's. An in-memory SQLite
    URL names a different database on every connection: use ``SqlMetadataStore.open`` for those.
    """
    await anyio.to_thread.run_sync(migrate_sync, url)
