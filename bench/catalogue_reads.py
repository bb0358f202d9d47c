"""Measures the catalogue's hot reads on PostgreSQL through the store, as the service calls them.

Per call, from 1 task and from 32 concurrent tasks: ``current(id)``, ``current_many([id])``,
``get_version(id, 1)``, the ``GET Binary?_id=X`` search (``search`` + ``count`` of
``CatalogueQuery(ids={id})``), ``get_client``; and ``add_version`` with and without
``pool_pre_ping`` on the engine. The store is whatever ``SqlMetadataStore.open`` returns for a
PostgreSQL URL; ``--portable`` measures the portable ``SqlMetadataStore`` on the same database for
comparison. It starts a private cluster (tests/pg_support.py, fsync off), so it needs nothing
running:

    PYTHONPATH=. .venv/bin/python bench/catalogue_reads.py [--calls 3000] [--rounds 3]

Results: docs/development.md, "PostgreSQL: driver and read path".
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from catalogue_drivers import timed as drivers_timed  # bench/ is on sys.path when run

from fhirbin.metadata.base import BinaryVersion, CatalogueQuery, Client
from fhirbin.metadata.engine import create_engine
from fhirbin.metadata.sql import SqlMetadataStore
from tests.pg_support import PostgresCluster

IDS = 1000


def a_version(binary_id: str, number: int) -> BinaryVersion:
    return BinaryVersion(
        binary_id, number, datetime.now(UTC), "application/pdf", "Patient/1", 1024, "ab" * 32
    )


async def timed(
    total: int, tasks: int, one: Callable[[int], Awaitable[object]]
) -> tuple[float, float]:
    """(microseconds of wall time per call, median latency in ms) of ``total`` calls: the
    driver benchmark's timing, as a cost per call."""
    per_second, median = await drivers_timed(total, tasks, one)
    return 1e6 / per_second, median


def reads(store: SqlMetadataStore) -> dict[str, Callable[[int], Awaitable[object]]]:
    async def search(n: int) -> object:
        query = CatalogueQuery(ids=frozenset({f"id-{n % IDS}"}), limit=11)
        return (await store.search(query), await store.count(query))

    return {
        "current": lambda n: store.current(f"id-{n % IDS}"),
        "current_many": lambda n: store.current_many([f"id-{n % IDS}"]),
        "get_version": lambda n: store.get_version(f"id-{n % IDS}", 1),
        "search+count": search,
        "get_client": lambda n: store.get_client("app"),
    }


async def measure(cluster: PostgresCluster, calls: int, portable: bool) -> None:
    url = cluster.new_database()
    store = await SqlMetadataStore.open(url)
    if portable:
        await store.close()
        store = SqlMetadataStore(create_engine(url))
    name = type(store).__name__
    for n in range(IDS):
        await store.add_version(a_version(f"id-{n}", 1))
    await store.add_client(Client("app", "app", "system/Binary.rs", "x", datetime.now(UTC)))
    for label, one in reads(store).items():
        await timed(200, 8, one)  # warm the pools and statement caches
        for tasks in (1, 32):
            per_call, median = await timed(calls, tasks, one)
            print(
                f"{name:24} {label:13} tasks={tasks:2}: {per_call:6.0f} µs/call"
                f"  ({1e6 / per_call:6.0f}/s, median {median:.2f} ms)",
                flush=True,
            )
    await store.close()


async def writes(cluster: PostgresCluster, calls: int) -> None:
    for pre_ping in (True, False):
        url = cluster.new_database()
        store = await SqlMetadataStore.open(url)
        await store.close()
        store = SqlMetadataStore(create_engine(url, pool_pre_ping=pre_ping))
        for tasks in (1, 32):
            first = tasks * calls

            async def add(n: int, first: int = first, store: SqlMetadataStore = store) -> None:
                await store.add_version(a_version(f"w-{first + n}", 1))

            per_call, median = await timed(calls, tasks, add)
            print(
                f"add_version pre_ping={pre_ping!s:5} tasks={tasks:2}: {per_call:6.0f} µs/call"
                f"  ({1e6 / per_call:6.0f}/s, median {median:.2f} ms)",
                flush=True,
            )
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--writes", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--portable", action="store_true", help="also the portable store")
    parser.add_argument("--no-writes", action="store_true")
    args = parser.parse_args()
    cluster = PostgresCluster.start()
    try:
        for _ in range(args.rounds):
            await measure(cluster, args.calls, portable=False)
            if args.portable:
                await measure(cluster, args.calls, portable=True)
            if not args.no_writes:
                await writes(cluster, args.writes)
    finally:
        cluster.destroy()


if __name__ == "__main__":
    asyncio.run(main())
