"""Health, readiness, metrics and access lines of a real `fhirbin serve` with 2 workers: the
metrics of both workers are summed by whichever answers /metrics (docs/operations.md)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.api.test_api_operate import sample
from tests.e2e.conftest import FHIRBIN, free_port

pytestmark = pytest.mark.e2e


@dataclass
class Served:
    origin: str
    base: str
    data_dir: Path
    stderr: Path
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("e2e-operate")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIRBIN_")}
    env.update({"FHIRBIN_WORKERS": "2", "FHIRBIN_METRICS_TOKEN": "scrape-me"})
    stderr = root / "stderr.log"
    with (root / "stdout.log").open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [FHIRBIN, "serve", "--port", str(port), "--data-dir", str(root / "data")],
            stdout=out,
            stderr=err,
            env=env,
        )
    origin = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{origin}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"fhirbin serve did not start:\n{stderr.read_text()}")
        time.sleep(0.1)
    try:
        yield Served(origin, f"{origin}/fhir", root / "data", stderr, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _token(served: Served) -> str:
    scope = "system/Binary.rs system/Binary.cud"
    command = [FHIRBIN, "client", "create", "e2e", "--scope", scope, "--json"]
    made = subprocess.run(
        [*command, "--data-dir", str(served.data_dir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    created = json.loads(made.stdout)
    answer = httpx.post(
        f"{served.base}/auth/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(created["client_id"], created["client_secret"]),
    )
    answer.raise_for_status()
    token: str = answer.json()["access_token"]
    return token


def _access_lines(served: Served) -> list[dict[str, object]]:
    lines = []
    for raw in served.stderr.read_text().splitlines():
        if raw.startswith("{"):
            entry = json.loads(raw)
            if entry.get("event") == "request":
                lines.append(entry)
    return lines


def test_metrics_sum_both_workers_and_access_lines_are_json_with_the_request_id(
    served: Served,
) -> None:
    auth = {"Authorization": f"Bearer {_token(served)}"}
    created = httpx.post(
        f"{served.base}/Binary",
        content=b"hello",
        headers={**auth, "Content-Type": "application/octet-stream"},
    )
    assert created.status_code == 201
    url = created.headers["location"].split("/_history")[0]
    reads = 40
    for number in range(reads):  # a new connection each: both workers answer some
        answer = httpx.get(url, headers={**auth, "X-Request-Id": f"e2e-{number}"})
        assert answer.status_code == 200
        assert answer.headers["x-request-id"] == f"e2e-{number}"

    assert httpx.get(f"{served.origin}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{served.origin}/readyz").json() == {"status": "ready"}
    assert httpx.get(f"{served.origin}/metrics").status_code == 401
    scrape = {"Authorization": "Bearer scrape-me"}
    # Each worker hands its request figures to the shared files every second (metrics.py).
    deadline = time.monotonic() + 5
    while True:
        text = httpx.get(f"{served.origin}/metrics", headers=scrape).text
        if sample(text, "fhirbin_requests_total", interaction="read", status="200") == reads:
            break
        assert time.monotonic() < deadline, text
        time.sleep(0.2)
    for _ in range(6):  # whichever worker answers the scrape sums both
        text = httpx.get(f"{served.origin}/metrics", headers=scrape).text
        assert sample(text, "fhirbin_requests_total", interaction="read", status="200") == reads
        assert sample(text, "fhirbin_requests_total", interaction="create", status="201") == 1

    deadline = time.monotonic() + 10
    while len([e for e in _access_lines(served) if e["interaction"] == "read"]) < reads:
        assert time.monotonic() < deadline, served.stderr.read_text()[-3000:]
        time.sleep(0.1)
    lines = [e for e in _access_lines(served) if e["interaction"] == "read"]
    assert {e["request_id"] for e in lines} == {f"e2e-{n}" for n in range(reads)}
    assert len({e["pid"] for e in lines}) == 2  # both workers served, and counted
    for entry in lines:
        assert entry["status"] == 200
        assert entry["bytes_out"] == 5
        assert entry["client_id"]
        assert "timestamp" in entry
    assert auth["Authorization"].split()[1] not in served.stderr.read_text()
