"""Every example in docs/api.md runs against the real app and gets the answer it shows."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support import BASE

pytestmark = pytest.mark.anyio

#: The docs show every interaction, $expunge among them (off by default).
SETTINGS_OVERRIDES = {"allow_expunge": True}

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


@dataclass
class Example:
    title: str
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    status: int
    expected: list[tuple[str, str]]


def examples() -> list[Example]:
    found = []
    text = DOC.read_text(encoding="utf-8")
    for match in re.finditer(r"### (.+?)\n\n```http\n(.*?)```", text, flags=re.DOTALL):
        title, block = match.group(1), match.group(2)
        request, _, response = block.partition("\nHTTP/1.1 ")
        head, _, body = request.partition("\n\n")
        lines = head.splitlines()
        method, target, _ = lines[0].split(" ")
        headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
        status_line, *rest = response.strip().splitlines()
        found.append(
            Example(
                title=title,
                method=method,
                target=target,
                headers=[(k, v) for k, v in headers],
                body=body.strip("\n").encode(),
                status=int(status_line.split()[0]),
                expected=[(k.strip(), v.strip()) for k, v in (r.split(":", 1) for r in rest if r)],
            )
        )
    return found


def test_the_docs_have_an_example_for_every_interaction() -> None:
    titles = {e.title for e in examples()}
    needed = {
        "create (native)",
        "read (native)",
        "vread",
        "update",
        "delete",
        "instance history",
        "type history",
        "search",
        "conditional read",
        "range",
        "HEAD",
        "capabilities",
    }
    assert needed <= titles


async def test_examples_in_order(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    binary_id = None
    for example in examples():
        target = example.target.replace("{id}", binary_id or "")
        body = example.body.replace(b"{id}", (binary_id or "").encode())
        headers = []
        for name, value in example.headers:
            if name == "Authorization":
                value = auth["Authorization"]
            headers.append((name, value.replace("{id}", binary_id or "")))
        response = await client.request(example.method, target, headers=headers, content=body)
        assert response.status_code == example.status, (example.title, response.text)
        if binary_id is None and example.status == 201:
            binary_id = response.headers["location"].split("/Binary/")[1].split("/")[0]
        for name, pattern in example.expected:
            pattern = pattern.replace("[base]", BASE).replace("{id}", binary_id or "")
            actual = response.headers.get(name)
            assert actual is not None, (example.title, name)
            assert fnmatch.fnmatchcase(actual, pattern.replace("…", "*")), (
                example.title,
                name,
                actual,
                pattern,
            )
