"""Measure S3 clients against a running S3 server (docs/development.md, "S3: client and layout").

    python bench/s3_clients.py --endpoint http://127.0.0.1:PORT --bucket NAME \
        --key ACCESS --secret SECRET [--size-mib 256]

Each figure runs in its own process so that peak RSS growth belongs to one client and one
operation: uploads stream 1 MiB chunks (a request body) as 8 MiB parts, at most 4 in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import psutil

MIB = 1 << 20
PART = 8 * MIB
IN_FLIGHT = 4


class RssPeak:
    """Samples this process's RSS every 5 ms in a thread; ``growth`` is peak minus start."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.start = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def growth(self) -> float:
        self._stop.set()
        self._thread.join()
        return (max(self.peak, self.proc.memory_info().rss) - self.start) / MIB


async def body(size: int, hashing: bool) -> AsyncIterator[bytes]:
    block = os.urandom(MIB)
    hasher = hashlib.sha256()
    for i in range(size // MIB):
        chunk = i.to_bytes(8, "big") + block[8:]  # every MiB distinct
        if hashing:
            hasher.update(chunk)
        yield chunk


def obstore_store(a: argparse.Namespace) -> Any:
    from obstore.store import S3Store

    return S3Store(
        a.bucket,
        config={
            "endpoint": a.endpoint,
            "access_key_id": a.key,
            "secret_access_key": a.secret,
            "region": "us-east-1",
            "virtual_hosted_style_request": False,
        },
        client_options={"allow_http": True},
    )


def boto_session(a: argparse.Namespace) -> Any:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    return get_session().create_client(
        "s3",
        endpoint_url=a.endpoint,
        aws_access_key_id=a.key,
        aws_secret_access_key=a.secret,
        region_name="us-east-1",
        config=AioConfig(
            s3={"addressing_style": "path"},
            max_pool_connections=64,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


async def boto_multipart(client: Any, bucket: str, key: str, chunks: AsyncIterator[bytes]) -> None:
    upload = await client.create_multipart_upload(Bucket=bucket, Key=key)
    uid = upload["UploadId"]
    parts: list[dict[str, Any]] = []
    slots = asyncio.Semaphore(IN_FLIGHT)
    tasks: list[asyncio.Task[None]] = []

    async def send(number: int, data: bytes) -> None:
        try:
            r = await client.upload_part(
                Bucket=bucket, Key=key, UploadId=uid, PartNumber=number, Body=data
            )
            parts.append({"PartNumber": number, "ETag": r["ETag"]})
        finally:
            slots.release()

    buf = bytearray()
    number = 0

    async def flush() -> None:
        nonlocal number, buf
        await slots.acquire()
        number += 1
        tasks.append(asyncio.create_task(send(number, bytes(buf))))
        buf = bytearray()

    async for chunk in chunks:
        buf += chunk
        if len(buf) >= PART:
            await flush()
    if buf:
        await flush()
    await asyncio.gather(*tasks)
    parts.sort(key=lambda p: p["PartNumber"])
    await client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=uid, MultipartUpload={"Parts": parts}
    )


async def run(a: argparse.Namespace) -> dict[str, float]:
    size = a.size_mib * MIB
    big, small = "bench/big", "bench/small"
    out: dict[str, float] = {}
    if a.client == "obstore":
        import obstore

        store = obstore_store(a)
        if a.op == "upload":
            rss = RssPeak()
            t = time.perf_counter()
            await obstore.put_async(
                store, big, body(size, a.hash), chunk_size=PART, max_concurrency=IN_FLIGHT
            )
            out["MiB/s"] = a.size_mib / (time.perf_counter() - t)
            out["rss_growth_MiB"] = rss.growth()
        elif a.op == "download":
            rss = RssPeak()
            t = time.perf_counter()
            got = 0
            result = await obstore.get_async(store, big, options={"range": (0, size)})
            async for piece in result.stream(min_chunk_size=256 * 1024):
                got += len(piece)
            out["MiB/s"] = got / MIB / (time.perf_counter() - t)
            out["rss_growth_MiB"] = rss.growth()
        elif a.op == "copy":
            t = time.perf_counter()
            await obstore.copy_async(store, big, "bench/copy")
            out["s"] = time.perf_counter() - t
        elif a.op == "small":
            await obstore.put_async(store, small, os.urandom(1024))
            out.update(await small_gets(lambda: obstore_get_small(obstore, store, small)))
            out.update(await heads(lambda: obstore.head_async(store, small)))
        return out
    async with boto_session(a) as client:
        if a.op == "upload":
            rss = RssPeak()
            t = time.perf_counter()
            await boto_multipart(client, a.bucket, big, body(size, a.hash))
            out["MiB/s"] = a.size_mib / (time.perf_counter() - t)
            out["rss_growth_MiB"] = rss.growth()
        elif a.op == "download":
            rss = RssPeak()
            t = time.perf_counter()
            got = 0
            r = await client.get_object(Bucket=a.bucket, Key=big, Range=f"bytes=0-{size - 1}")
            async with r["Body"] as stream:
                async for piece in stream.iter_chunks(256 * 1024):
                    got += len(piece)
            out["MiB/s"] = got / MIB / (time.perf_counter() - t)
            out["rss_growth_MiB"] = rss.growth()
        elif a.op == "copy":
            t = time.perf_counter()
            await client.copy_object(
                Bucket=a.bucket, Key="bench/copy", CopySource={"Bucket": a.bucket, "Key": big}
            )
            out["s"] = time.perf_counter() - t
        elif a.op == "small":
            await client.put_object(Bucket=a.bucket, Key=small, Body=os.urandom(1024))

            async def get() -> None:
                r = await client.get_object(Bucket=a.bucket, Key=small)
                async with r["Body"] as stream:
                    await stream.read()

            out.update(await small_gets(get))
            out.update(await heads(lambda: client.head_object(Bucket=a.bucket, Key=small)))
    return out


async def obstore_get_small(obstore: Any, store: Any, key: str) -> None:
    result = await obstore.get_async(store, key)
    await result.bytes_async()


async def small_gets(
    get: Callable[[], Any], total: int = 3000, width: int = 32
) -> dict[str, float]:
    for _ in range(50):
        await get()
    latencies: list[float] = []
    queue = iter(range(total))

    async def worker() -> None:
        for _ in queue:
            t = time.perf_counter()
            await get()
            latencies.append(time.perf_counter() - t)

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(width)))
    elapsed = time.perf_counter() - t
    return {"get1k_per_s": total / elapsed, "get1k_p50_ms": statistics.median(latencies) * 1e3}


async def heads(head: Callable[[], Any], total: int = 500) -> dict[str, float]:
    latencies = []
    for _ in range(total):
        t = time.perf_counter()
        await head()
        latencies.append(time.perf_counter() - t)
    return {"head_p50_ms": statistics.median(latencies) * 1e3}


def main() -> None:
    p = argparse.ArgumentParser()
    for name in ("endpoint", "bucket", "key", "secret"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--size-mib", type=int, default=256)
    p.add_argument("--client")
    p.add_argument("--op")
    p.add_argument("--hash", action="store_true")
    a = p.parse_args()
    if a.client:
        print(json.dumps(asyncio.run(run(a))))
        return
    for client in ("obstore", "aiobotocore"):
        for op in ("upload", "download", "copy", "small"):
            argv = [sys.executable, __file__, *sys.argv[1:], "--client", client, "--op", op]
            result = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=True)  # noqa: S603
            print(client, op, result.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
