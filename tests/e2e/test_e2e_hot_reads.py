"""Plain reads over real HTTP against `fhirbin serve` with its default settings (2 workers),
where the one-step lane (api/hotread.py) answers them: small contents from memory, larger
ones through granian's pathsend, and every write seen at once by every worker (the shared
change signal of metadata/fastread.py)."""

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
