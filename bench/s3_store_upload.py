"""Where a 256 MiB ``put`` through S3BlobStore spends its time: staging vs publishing, with the
upload's SHA-256 on the event loop or in a worker thread, interleaved (docs/development.md,
"S3: client and layout"). Starts its own SeaweedFS (tests/s3_support.py)::

    .venv/bin/python bench/s3_store_upload.py [--size-mib 256] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fhirbin.storage import s3 as s3mod
from tests.s3_support import start_seaweed

MIB = 1 << 20


async def body(size: int, seed: int) -> AsyncIterator[bytes]:
    block = os.urandom(MIB)
    for i in range(size // MIB):
        yield seed.to_bytes(8, "big") + i.to_bytes(8, "big") + block[16:]
        await asyncio.sleep(0)


async def one(store: s3mod.S3BlobStore, size: int, seed: int) -> tuple[float, float]:
    started = time.perf_counter()
    staged = await store.stage(body(size, seed))
    staged_at = time.perf_counter()
    await staged.publish()
    published_at = time.perf_counter()
    await staged.discard()
    return staged_at - started, published_at - staged_at


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib * MIB
    out: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp, start_seaweed(Path(tmp)) as seaweed:
        store = s3mod.S3BlobStore.from_url(
            seaweed.fresh_url(), endpoint_url=seaweed.endpoint, env=seaweed.env
        )
        await store.check()
        inline, threaded = 1 << 62, s3mod._HASH_INLINE_BELOW
        seed = 0
        for run in range(args.runs):
            for name, threshold in (("hash on the loop", inline), ("hash in a thread", threaded)):
                s3mod._HASH_INLINE_BELOW = threshold
                seed += 1
                stage, publish = await one(store, size, seed)
                row = out.setdefault(name, {"stage_mib_s": [], "publish_s": [], "put_mib_s": []})
                row["stage_mib_s"].append(round(size / stage / MIB, 1))
                row["publish_s"].append(round(publish, 2))
                row["put_mib_s"].append(round(size / (stage + publish) / MIB, 1))
                print(
                    f"run {run + 1} {name}: stage {stage:.2f} s, publish {publish:.2f} s",
                    file=sys.stderr,
                )
        await store.close()
    for row in out.values():
        for key in list(row):
            row[f"{key}_median"] = [statistics.median(row[key])]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
