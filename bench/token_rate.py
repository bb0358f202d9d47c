"""Token requests per second at the token endpoint, in process (real app, real SQLite).

    .venv/bin/python bench/token_rate.py [--seconds 10] [--concurrency 4] [--argon2]

Registers one client the way ``fhirbin client add`` does (``hash_secret``; ``--argon2``: with
an argon2id hash as clients registered before sha256 hashes have) and posts client_credentials
requests with client_secret_basic for the given time.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from fhirbin.api.app import create_app
from fhirbin.auth.clients import hash_secret, new_client_id, new_client_secret
from fhirbin.config import load_settings
from fhirbin.metadata.base import Client


async def main(seconds: float, concurrency: int, argon2: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings({}, {"data_dir": Path(tmp), "base_url": "http://bench/fhir"})
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            client_id, secret = new_client_id(), new_client_secret()
            if argon2:
                from fhirbin.auth.clients import _HASHER

                stored = _HASHER.hash(secret)
            else:
                stored = hash_secret(secret)
            await app.state.runtime.catalogue.add_client(
                Client(
                    client_id=client_id,
                    name="bench",
                    scope="system/Binary.rs",
                    secret_hash=stored,
                    created_at=datetime.now(UTC),
                )
            )
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
                done = 0
                latencies: list[float] = []
                deadline = time.monotonic() + seconds

                async def worker() -> None:
                    nonlocal done
                    while time.monotonic() < deadline:
                        start = time.perf_counter()
                        response = await http.post(
                            "/fhir/auth/token",
                            data={"grant_type": "client_credentials", "scope": "system/Binary.rs"},
                            auth=(client_id, secret),
                        )
                        assert response.status_code == 200, response.text
                        latencies.append(time.perf_counter() - start)
                        done += 1

                began = time.monotonic()
                await asyncio.gather(*(worker() for _ in range(concurrency)))
                elapsed = time.monotonic() - began
    latencies.sort()
    print(
        f"{done} token requests in {elapsed:.1f} s: {done / elapsed:.1f}/s, "
        f"median {latencies[len(latencies) // 2] * 1000:.1f} ms, "
        f"p95 {latencies[int(len(latencies) * 0.95)] * 1000:.1f} ms (concurrency {concurrency})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--argon2", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.concurrency, args.argon2))
