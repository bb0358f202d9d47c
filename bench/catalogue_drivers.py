"""Measures the PostgreSQL drivers behind the catalogue: asyncpg against psycopg 3 (async).

Two operations through SQLAlchemy Core, as the store runs them: the primary-key lookup of the
current version (``queries.newest``) and the ``add_version`` transaction (INSERT + UPDATE +
COMMIT). Each on one connection in sequence, then from 32 concurrent tasks sharing a pool of
32. It starts a private cluster (tests/pg_support.py) so it needs nothing running:

    .venv/bin/pip install asyncpg 'psycopg[binary]'
    PYTHONPATH=. .venv/bin/python bench/catalogue_drivers.py [--reads 4000] [--writes 1500]

Results and the decision they led to: docs/development.md, "PostgreSQL: driver and read path".
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import make_url
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from fhirbin.metadata import queries
from fhirbin.metadata.base import BinaryVersion
from fhirbin.metadata.migrate import upgrade
from fhirbin.metadata.sql import SqlMetadataStore
from tests.pg_support import PostgresCluster

IDS = 1000


def a_version(binary_id: str, number: int) -> BinaryVersion:
    return BinaryVersion(
        binary_id, number, datetime.now(UTC), "application/pdf", None, 1, "ab" * 32
    )


async def timed(
    total: int, tasks: int, one: Callable[[int], Awaitable[object]]
) -> tuple[float, float]:
    """(operations per second, median latency in ms) of ``total`` calls from ``tasks`` tasks."""
    latencies: list[float] = []

    async def worker(start: int) -> None:
        for n in range(start, total, tasks):
            began = time.perf_counter()
            await one(n)
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(worker(t) for t in range(tasks)))
    elapsed = time.perf_counter() - began
    return total / elapsed, statistics.median(latencies) * 1000


async def measure(url: str, driver: str, reads: int, writes: int) -> None:
    engine: AsyncEngine = create_async_engine(
        make_url(url).set(drivername=f"postgresql+{driver}"), pool_size=32, max_overflow=0
    )
    await upgrade(engine)
    store = SqlMetadataStore(engine)
    for n in range(IDS):
        await store.add_version(a_version(f"id-{n}", 1))

    async def lookup(n: int) -> object:
        async with engine.connect() as connection:
            return (await connection.execute(queries.newest(f"id-{n % IDS}"))).first()

    async def add(n: int) -> None:
        await store.add_version(a_version(f"w-{driver}-{n}", 1))

    async def add_from(first: int, n: int) -> None:
        await add(first + n)

    await timed(500, 8, lookup)  # warm the pool and the statement caches
    for tasks in (1, 32):
        rate, median = await timed(reads, tasks, lookup)
        print(f"{driver:8} newest      tasks={tasks:2}: {rate:7.0f}/s  median {median:.2f} ms")
    for tasks in (1, 32):
        first = 0 if tasks == 1 else writes  # fresh ids: every add is a new row
        rate, median = await timed(writes, tasks, functools.partial(add_from, first))
        print(f"{driver:8} add_version tasks={tasks:2}: {rate:7.0f}/s  median {median:.2f} ms")
    if driver == "asyncpg":
        await breakdown(url)
    await engine.dispose()


async def breakdown(url: str) -> None:
    """Where a lookup's time goes: the server's execution alone, and asyncpg without SQLAlchemy."""
    import asyncpg  # type: ignore[import-untyped]  # no stubs

    connection = await asyncpg.connect(url)
    try:
        compiled = queries.newest("id-1").compile(
            dialect=PGDialect_asyncpg(),  # type: ignore[no-untyped-call]
            compile_kwargs={"literal_binds": True},
        )
        sql = str(compiled)
        plan = await connection.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
        server_ms = json.loads(plan)[0]["Execution Time"]
        statement = await connection.prepare(
            "SELECT id, version, last_updated, content_type, security_context, size, sha256,"
            " deleted FROM binary_version WHERE id = $1 ORDER BY version DESC LIMIT 1"
        )

        async def fetch(n: int) -> object:
            row: object = await statement.fetchrow(f"id-{n % IDS}")
            return row

        rate, median = await timed(2000, 1, fetch)
        print(f"asyncpg  raw prepared  tasks= 1: {rate:7.0f}/s  median {median:.2f} ms")
        print(f"server execution of newest: {server_ms:.3f} ms")
    finally:
        await connection.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=4000)
    parser.add_argument("--writes", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    cluster = PostgresCluster.start()
    try:
        # The bench measures the driver, not the disk: the test cluster runs with fsync off.
        for _ in range(args.rounds):
            for driver in ("asyncpg", "psycopg"):
                await measure(cluster.new_database(), driver, args.reads, args.writes)
    finally:
        cluster.destroy()


if __name__ == "__main__":
    asyncio.run(main())
