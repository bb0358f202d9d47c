"""Measures what durable SQLite commits cost: add_version with synchronous=NORMAL against FULL.

Sequential ``add_version`` calls (INSERT + UPDATE + COMMIT each) on a fresh catalogue file in
the given folder (default: a temporary one; use a folder on the disk you deploy on):

    PYTHONPATH=. .venv/bin/python bench/catalogue_durability.py [--commits 1000] [--dir PATH]

Results and the decision: docs/development.md, "SQLite: durable commits".
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fhirbin.metadata import engine
from fhirbin.metadata.base import BinaryVersion
from fhirbin.metadata.sql import SqlMetadataStore, sqlite_url


async def run(folder: Path, synchronous: str, commits: int) -> list[float]:
    def configure(dbapi_connection: Any, record: Any) -> None:
        engine._configure_sqlite_connection(dbapi_connection, record, synchronous=synchronous)

    engine._configure_sqlite_writer = configure
    store = await SqlMetadataStore.open(sqlite_url(folder / f"{synchronous}.db"))
    times: list[float] = []
    try:
        for n in range(commits):
            row = BinaryVersion(f"id-{n}", 1, datetime.now(UTC), "text/plain", None, 1, "ab" * 32)
            began = time.perf_counter()
            await store.add_version(row)
            times.append(time.perf_counter() - began)
    finally:
        await store.close()
    return times


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commits", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        for round_ in range(args.rounds):
            for synchronous in ("NORMAL", "FULL"):
                path = Path(folder) / str(round_)
                path.mkdir(exist_ok=True)
                times = await run(path, synchronous, args.commits)
                total = sum(times)
                median = statistics.median(times) * 1000
                p99 = statistics.quantiles(times, n=100)[98] * 1000
                print(
                    f"{synchronous:6}: {args.commits} commits in {total:.2f} s = "
                    f"{args.commits / total:.0f}/s, median {median:.2f} ms,"
                    f" p99 {p99:.2f} ms"
                )


if __name__ == "__main__":
    asyncio.run(main())
