"""Alembic environment for the catalogue: runs the revisions in ``versions/`` on one connection.

``fhirbin.metadata.migrate`` hands over a connection that is already inside a write transaction
(``config.attributes["connection"]``), so every revision of an upgrade commits together or not at
all. The ``alembic`` command line, for authoring revisions, may instead set ``sqlalchemy.url``.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from fhirbin.metadata.engine import UPGRADE_LOCK, create_engine, write_transaction
from fhirbin.metadata.schema import metadata

config = context.config


def run_on(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # As engine.lock_for_upgrade (already held when fhirbin.metadata.migrate runs this; the
        # lock is re-entrant): for upgrades run from the alembic command line.
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({UPGRADE_LOCK})")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite can ALTER very little; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_from_url(url: str) -> None:
    engine = create_engine(url, poolclass=NullPool)
    try:
        async with write_transaction(engine) as connection:
            await connection.run_sync(run_on)
    finally:
        await engine.dispose()


def main() -> None:
    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"),
            target_metadata=metadata,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection given and no sqlalchemy.url configured")
    # Only reached from the alembic command line, where no event loop is running yet.
    asyncio.run(run_from_url(url))


main()
