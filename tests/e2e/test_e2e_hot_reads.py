"""Reads and searches over real HTTP against `fhirbin serve` with its default settings (2
workers), where the fast lane (api/fastlane.py) answers those carrying a token the worker has
already verified: small contents from memory, larger ones through granian's pathsend, FHIR
forms and ``?_id=`` searches through the same read path as the general one (api/reading.py,
api/searches.py), and every write seen at once by every worker (the shared change signal of
metadata/fastread.py). A token's first request on a worker takes the general path."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import Server, start_server, stop_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = start_server(tmp_path_factory.mktemp("e2e-hot"), {"FHIRBIN_WORKERS": "2"})
    try:
        yield started
    finally:
        stop_server(started)


@pytest.fixture(scope="module")
def headers(default_server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {default_server.token()}"}


def create(server: Server, headers: dict[str, str], body: bytes, content_type: str) -> str:
    created = httpx.post(
        f"{server.base}/Binary", content=body, headers={**headers, "Content-Type": content_type}
    )
    assert created.status_code == 201, created.text
    return created.headers["location"].split("/Binary/")[1].split("/")[0]


def comparable(answer: httpx.Response) -> list[tuple[str, str]]:
    return [(k, v) for k, v in answer.headers.multi_items() if k not in ("x-request-id", "date")]


@pytest.mark.parametrize("size", [1024, 3 * 1024 * 1024])
def test_plain_reads_are_byte_exact_and_carry_the_general_paths_headers(
    default_server: Server, headers: dict[str, str], size: int
) -> None:
    body = os.urandom(size)
    binary_id = create(default_server, headers, body, "application/octet-stream")
    url = f"{default_server.base}/Binary/{binary_id}"
    general = httpx.get(url, headers={**headers, "If-None-Match": '"never"'})
    assert general.status_code == 200
    for _ in range(6):  # new connections: both workers answer some
        hot = httpx.get(url, headers=headers)
        assert hot.status_code == 200
        assert hot.content == body
        assert comparable(hot) == comparable(general)


def test_every_write_is_seen_at_once_by_every_worker(
    default_server: Server, headers: dict[str, str]
) -> None:
    binary_id = create(default_server, headers, b"version 1", "text/plain")
    url = f"{default_server.base}/Binary/{binary_id}"
    for n in range(2, 22):
        for _ in range(3):  # warm whichever workers answer: they remember version n - 1
            assert httpx.get(url, headers=headers).content == f"version {n - 1}".encode()
        put = httpx.put(
            url, content=f"version {n}".encode(), headers={**headers, "Content-Type": "text/plain"}
        )
        assert put.status_code == 200
        for _ in range(3):
            answer = httpx.get(url, headers=headers)
            assert (answer.content, answer.headers["etag"]) == (
                f"version {n}".encode(),
                f'W/"{n}"',
            )
    assert httpx.delete(url, headers=headers).status_code == 204
    for _ in range(4):
        assert httpx.get(url, headers=headers).status_code == 410


@pytest.mark.parametrize("form", ["search", "fhir-json"])
def test_a_search_and_a_fhir_read_on_the_lane_equal_the_general_paths_answer(
    default_server: Server, headers: dict[str, str], form: str
) -> None:
    binary_id = create(default_server, headers, b"lane or not", "text/plain")
    if form == "search":
        url = f"{default_server.base}/Binary?_id={binary_id}"
    else:
        url = f"{default_server.base}/Binary/{binary_id}?_format=json"
    # Two new tokens, each on one connection (one worker): its first request goes the general
    # way (the worker verifies it), the next ones take the lane.
    for _ in range(2):
        auth = {"Authorization": f"Bearer {default_server.token()}"}
        with httpx.Client() as client:
            general = client.get(url, headers=auth)
            assert general.status_code == 200, general.text
            for _ in range(3):
                hot = client.get(url, headers=auth)
                assert (hot.status_code, hot.content) == (200, general.content)
                assert comparable(hot) == comparable(general)
    answer = general.json()
    if form == "search":
        assert (answer["type"], answer["total"]) == ("searchset", 1)
        assert answer["entry"][0]["resource"]["id"] == binary_id
    else:
        assert (answer["resourceType"], answer["id"]) == ("Binary", binary_id)
