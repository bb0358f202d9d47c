"""The operator's endpoints and signals (api/operate.py, api/observe.py, metrics.py): health,
readiness against real dependencies, Prometheus metrics, request ids and access lines."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx
import pytest
import structlog
from starlette.requests import Request
from starlette.responses import Response

from fhirbin.api import reads
from fhirbin.config import Settings, load_settings
from tests.clamd_support import Clamd, start_clamd
from tests.pg_support import PostgresCluster
from tests.support import BASE, bearer_for, serving

pytestmark = pytest.mark.anyio

OCTETS = "application/octet-stream"


def _settings(tmp_path: Path, **values: object) -> Settings:
    return load_settings(
        {},
        {"data_dir": tmp_path / "data", "base_url": BASE, "revocation_check_interval": 60} | values,
    )


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        metric, _, value = line.rpartition(" ")
        found = dict(re.findall(r'(\w+)="([^"]*)"', metric))
        if metric.split("{")[0] == name and found == labels:
            return float(value)
    return 0.0


# --- health and readiness ---------------------------------------------------------------------


async def test_healthz_and_readyz_answer_without_a_token(tmp_path: Path) -> None:
    async with serving(_settings(tmp_path)) as (_, http):
        health = await http.get("/healthz", headers={"X-Request-Id": "probe-7"})
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        assert health.headers["x-request-id"] == "probe-7"
        ready = await http.get("/readyz")
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
        assert health.headers["cache-control"] == "no-store"


@pytest.fixture
def own_postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


async def test_readyz_is_503_naming_a_stopped_database_and_nothing_sensitive(
    tmp_path: Path, own_postgres: PostgresCluster
) -> None:
    url = own_postgres.migrated_database()
    async with serving(_settings(tmp_path, database_url=url)) as (app, http):
        auth = await bearer_for(app, http)
        assert (await http.get("/readyz")).status_code == 200
        own_postgres.stop()
        try:
            ready = await http.get("/readyz")
            assert ready.status_code == 503, ready.text
            outcome = ready.json()
            assert outcome["resourceType"] == "OperationOutcome"
            assert outcome["issue"][0]["code"] == "transient"
            assert "database" in outcome["issue"][0]["diagnostics"]
            assert "content store" not in ready.text
            for secret in ("127.0.0.1", "localhost", "postgres", str(own_postgres.port)):
                assert secret not in ready.text.replace("database", "")
            assert (await http.get("/healthz")).status_code == 200  # the process still answers
            failed = await http.get("/fhir/Binary/abc", headers=auth)
            assert failed.status_code == 503
            text = (await http.get("/metrics")).text
            assert sample(text, "fhirbin_dependency_errors_total", dependency="database") == 1
        finally:
            own_postgres.resume()
        assert (await http.get("/readyz")).status_code == 200


@pytest.fixture
def own_clamd(tmp_path: Path) -> Iterator[Clamd]:
    server = start_clamd(tmp_path / "clamd")
    try:
        yield server
    finally:
        server.stop()


async def test_readyz_checks_clamd_when_configured_and_counts_verdicts(
    tmp_path: Path, own_clamd: Clamd
) -> None:
    settings = _settings(tmp_path, clamav=own_clamd.tcp_url, deny_types="text/html")
    async with serving(settings) as (app, http):
        auth = await bearer_for(app, http)
        assert (await http.get("/readyz")).status_code == 200
        stored = await http.post(
            "/fhir/Binary", content=b"plain", headers={**auth, "Content-Type": "text/plain"}
        )
        assert stored.status_code == 201
        refused = await http.post(
            "/fhir/Binary",
            content=b"<html><script>x</script></html>",
            headers={**auth, "Content-Type": "text/html"},
        )
        assert refused.status_code >= 400
        own_clamd.stop()
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert "virus scanner" in ready.json()["issue"][0]["diagnostics"]
        assert str(own_clamd.tcp_port) not in ready.text
        text = (await http.get("/metrics")).text
        assert sample(text, "fhirbin_screening_verdicts_total", verdict="clean") == 1
        assert sample(text, "fhirbin_screening_verdicts_total", verdict="type-refused") == 1


# --- metrics ----------------------------------------------------------------------------------


async def test_metrics_count_requests_by_interaction_and_status_hot_reads_included(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    general_reads = 0
    original = reads.read

    async def counted(request: Request) -> Response:
        nonlocal general_reads
        general_reads += 1
        return await original(request)

    monkeypatch.setattr(reads, "read", counted)
    async with serving(_settings(tmp_path)) as (app, http):
        auth = await bearer_for(app, http)
        created = await http.post(
            "/fhir/Binary", content=b"x" * 1000, headers={**auth, "Content-Type": OCTETS}
        )
        binary_id = created.headers["location"].split("/Binary/")[1].split("/")[0]
        for _ in range(5):
            read = await http.get(f"/fhir/Binary/{binary_id}", headers=auth)
            assert read.content == b"x" * 1000
        await http.get(f"/fhir/Binary/{binary_id}/_history/1", headers=auth)
        await http.get("/fhir/Binary?_count=1", headers=auth)
        await http.get("/fhir/Binary/nothere", headers=auth)
        await http.get("/fhir/Binary/abc")  # no token
        await http.delete(f"/fhir/Binary/{binary_id}", headers=auth)
        await http.get("/fhir/metadata")
        answer = await http.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = answer.text
    assert general_reads < 5  # the fast lane answered some reads ...
    assert sample(text, "fhirbin_requests_total", interaction="read", status="200") == 5
    assert sample(text, "fhirbin_requests_total", interaction="create", status="201") == 1
    assert sample(text, "fhirbin_requests_total", interaction="vread", status="200") == 1
    assert sample(text, "fhirbin_requests_total", interaction="search-type", status="200") == 1
    assert sample(text, "fhirbin_requests_total", interaction="read", status="404") == 1
    assert sample(text, "fhirbin_requests_total", interaction="read", status="401") == 1
    assert sample(text, "fhirbin_requests_total", interaction="delete", status="204") == 1
    assert sample(text, "fhirbin_requests_total", interaction="capabilities", status="200") == 1
    assert sample(text, "fhirbin_requests_total", interaction="login", status="200") == 1
    assert sample(text, "fhirbin_request_duration_seconds_count", interaction="read") == 7
    assert sample(text, "fhirbin_received_bytes_total", interaction="create") == 1000
    assert sample(text, "fhirbin_sent_bytes_total", interaction="read") >= 5000
    assert sample(text, "fhirbin_uploads_in_flight") == 0
    assert "fhirbin_audit_backlog" in text
    # Labels are interaction codes and statuses only: no id, token or client.
    assert binary_id not in text
    assert auth["Authorization"].split()[1] not in text
    assert "operation" not in text.replace("# HELP", "")
    assert not re.search(r'status="(?!\d{3}")', text)


async def test_metrics_token_is_required_when_set(tmp_path: Path) -> None:
    async with serving(_settings(tmp_path, metrics_token="s3cret-scrape")) as (_, http):
        missing = await http.get("/metrics")
        assert missing.status_code == 401
        assert missing.json()["resourceType"] == "OperationOutcome"
        assert missing.headers["www-authenticate"].startswith("Bearer")
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = await http.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape"})
        assert right.status_code == 200
        assert "fhirbin_requests_total" in right.text
        # The health probes stay open.
        assert (await http.get("/healthz")).status_code == 200


# --- request ids and access lines ------------------------------------------------------------


async def test_one_access_line_per_request_with_its_request_id_and_never_the_token(
    tmp_path: Path,
) -> None:
    async with serving(_settings(tmp_path)) as (app, http):
        auth = await bearer_for(app, http)
        created = await http.post(
            "/fhir/Binary", content=b"secret content", headers={**auth, "Content-Type": OCTETS}
        )
        location = created.headers["location"].split("/fhir")[1].split("/_history")[0]
        with structlog.testing.capture_logs() as logs:
            sent = await http.get(
                f"/fhir{location}?access_token=leak",
                headers={**auth, "X-Request-Id": "trace-42"},
            )
            read = await http.get(f"/fhir{location}", headers={**auth, "X-Request-Id": "bad id"})
    assert sent.headers["x-request-id"] == "trace-42"
    assert read.headers["x-request-id"] != "bad id"
    lines = [entry for entry in logs if entry["event"] == "request"]
    assert len(lines) == 2
    first, second = lines
    assert first["request_id"] == "trace-42"
    assert first["status"] == sent.status_code
    assert first["interaction"] == "read"
    assert first["path"] == f"/fhir{location}"
    assert second["request_id"] == read.headers["x-request-id"]
    assert (second["status"], second["bytes_out"]) == (200, len(b"secret content"))
    assert second["client_id"]
    assert isinstance(second["duration_ms"], float)
    assert second["log_level"] == "info"
    token = auth["Authorization"].split()[1]
    for entry in logs:
        flat = repr(entry)
        assert token not in flat
        assert "secret content" not in flat
        assert "leak" not in flat


# --- the Grafana dashboard --------------------------------------------------------------------

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "fhirbin-dashboard.json"


def test_the_grafana_dashboard_queries_only_metrics_fhirbin_exports() -> None:
    from fhirbin.metrics import Metrics

    exported = set(re.findall(r"^# TYPE (\w+) ", Metrics().exposition().decode(), re.M))
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    used: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used.update(re.findall(r"\bfhirbin_\w+", target["expr"]))
    assert used
    for name in used:
        family = re.sub(r"_(bucket|count|sum)$", "", name)
        assert family in exported or name in exported, name
    counters = {n for n in used if n.endswith("_total")}
    assert {
        "fhirbin_requests_total",
        "fhirbin_received_bytes_total",
        "fhirbin_sent_bytes_total",
        "fhirbin_screening_verdicts_total",
        "fhirbin_dependency_errors_total",
    } <= counters


async def test_an_upload_in_progress_is_counted_in_flight(tmp_path: Path) -> None:
    async with serving(_settings(tmp_path)) as (app, http):
        auth = await bearer_for(app, http)
        halfway = anyio.Event()
        finish = anyio.Event()

        async def body() -> AsyncIterator[bytes]:
            yield b"a" * 1000
            halfway.set()
            await finish.wait()
            yield b"b" * 1000

        answers: list[httpx.Response] = []

        async def upload() -> None:
            answers.append(
                await http.post(
                    "/fhir/Binary", content=body(), headers={**auth, "Content-Type": OCTETS}
                )
            )

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(upload)
            await halfway.wait()
            during = (await http.get("/metrics")).text
            finish.set()
        after = (await http.get("/metrics")).text
    assert answers[0].status_code == 201
    assert sample(during, "fhirbin_uploads_in_flight") == 1
    assert sample(after, "fhirbin_uploads_in_flight") == 0
    assert sample(after, "fhirbin_received_bytes_total", interaction="create") == 2000


@pytest.mark.parametrize(("log_format", "is_json"), [("json", True), ("text", False)])
def test_log_format_json_or_text_on_stderr(log_format: str, is_json: bool) -> None:
    script = (
        "from fhirbin.cli import configure_logging\n"
        "import structlog, logging\n"
        f"configure_logging('info', {log_format!r})\n"
        "structlog.get_logger('fhirbin.access').info('request', request_id='r-1', status=200)\n"
        "logging.getLogger('_granian').info('Started worker-1')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 2
    if is_json:
        access, foreign = (json.loads(line) for line in lines)
        assert (access["event"], access["request_id"], access["level"]) == (
            "request",
            "r-1",
            "info",
        )
        assert access["timestamp"].endswith("Z")
        assert isinstance(access["pid"], int)
        assert (foreign["event"], foreign["logger"]) == ("Started worker-1", "_granian")
    else:
        assert "request" in lines[0]
        assert "request_id=r-1" in lines[0]
        assert not lines[0].startswith("{")
