"""Per-request cost of observation (request id, metrics, access line, audit) on the hot read.

CPU time (process_time: other load on the machine does not count). "without" drops the
ObserveMiddleware (and, where the tree still has one, a separate AuditMiddleware): the request
path with no observation and no audit at all. The audit records' background work (building
and storing them, in the AuditLog's flush) is timed apart, per record, after the requests.

Drives the real application in-process (no sockets: only Python's share of a request) with a
1 KiB plain read that the one-step lane answers from memory, with and without the
ObserveMiddleware, logging JSON to /dev/null as ``serve`` does when not on a terminal.
    .venv/bin/python bench/observe_cost.py [--requests 20000] [--multiprocess]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

parser = argparse.ArgumentParser()
parser.add_argument("--requests", type=int, default=20000)
parser.add_argument("--multiprocess", action="store_true", help="prometheus multiprocess mode")
parser.add_argument("--level", default="info", help="log level (warning: no access lines)")
parser.add_argument("--no-metrics", action="store_true", help="metrics.request does nothing")
args = parser.parse_args()
if args.multiprocess:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="fhirbin-bench-")

import httpx  # noqa: E402

from fhirbin.api.app import create_app  # noqa: E402
from fhirbin.cli import configure_logging  # noqa: E402
from fhirbin.config import load_settings  # noqa: E402
from tests.support import ALL_SCOPES, BASE, register  # noqa: E402


async def measure(observe: bool, folder: Path) -> float:
    settings = load_settings({}, {"data_dir": folder, "base_url": BASE})
    app = create_app(settings)
    if args.no_metrics:
        from fhirbin.metrics import Metrics

        Metrics.request = lambda *_: None  # type: ignore[method-assign,assignment]
    if not observe:
        dropped = {"ObserveMiddleware", "AuditMiddleware"}
        app.user_middleware = [
            m for m in app.user_middleware if getattr(m.cls, "__name__", "") not in dropped
        ]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            client_id, secret = await register(app)
            token = (
                await http.post(
                    "/fhir/auth/token",
                    data={"grant_type": "client_credentials", "scope": ALL_SCOPES},
                    auth=(client_id, secret),
                )
            ).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            made = await http.post(
                "/fhir/Binary",
                content=os.urandom(1024),
                headers={**auth, "Content-Type": "application/octet-stream"},
            )
            path = "/fhir/" + made.headers["location"].split("/fhir/")[1].split("/_history")[0]
            assert (await http.get(path, headers=auth)).status_code == 200
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"t"), (b"authorization", auth["Authorization"].encode())],
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8080),
            "state": {},
        }
        statuses: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        for _ in range(500):  # warm up
            await app(dict(scope), receive, send)
        started = time.process_time()
        for _ in range(args.requests):
            await app(dict(scope), receive, send)
        elapsed = time.process_time() - started
        assert set(statuses) == {200}, set(statuses)
        audit = app.state.runtime.audit
        waiting = audit.pending
        flushed = time.process_time()
        await audit.flush()
        background = time.process_time() - flushed
        if waiting:
            flush_costs.append(background / waiting * 1e6)
    return elapsed / args.requests * 1e6


flush_costs: list[float] = []


async def main() -> None:
    real, sys.stderr = sys.stderr, open(os.devnull, "w")  # noqa: SIM115, ASYNC230
    configure_logging(args.level, "json")  # the access lines go to /dev/null
    sys.stderr = real
    results: dict[str, list[float]] = {"without": [], "with": []}
    for round_ in range(5):
        for observe in (False, True):
            with tempfile.TemporaryDirectory() as folder:
                cost = await measure(observe, Path(folder) / f"data{round_}")
            results["with" if observe else "without"].append(cost)
    sys.stdout.write(
        f"mode: {'multiprocess' if args.multiprocess else 'in-process'} metrics\n"
        f"without ObserveMiddleware: {min(results['without']):.1f} us/request (best of 5)\n"
        f"with    ObserveMiddleware: {min(results['with']):.1f} us/request (best of 5)\n"
    )
    if flush_costs:
        sys.stdout.write(
            f"audit flush after the requests: {min(flush_costs):.1f} us/record (best of "
            f"{len(flush_costs)}; records left pending by the timed loop, built and stored)\n"
        )


asyncio.run(main())
