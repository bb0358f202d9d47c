"""fhirbin.fhir.binary_stream: the streamed FHIR JSON parse answers exactly as the in-memory
one (fhir/binary_parse.py), for Binaries whose data is long enough to be kept out of ijson."""

from __future__ import annotations

import base64
import json
import tempfile
from typing import Any

import pytest

from fhirbin.errors import BadRequest
from fhirbin.fhir.binary_parse import parse_binary_resource
from fhirbin.fhir.binary_stream import BLOCK, RUN, data_chunks, parse_binary_json_file

RAW = bytes(range(256)) * 1200 + b"\x07"  # 300 KiB and a bit: many runs, padding at the end
B64 = base64.b64encode(RAW).decode()
WRAPPED = "\n".join(B64[i : i + 76] for i in range(0, len(B64), 76))


def streamed(body: bytes) -> Any:
    with tempfile.TemporaryFile() as spool:
        spool.write(body)
        try:
            parsed = parse_binary_json_file(spool, must_be_json=True)
        except BadRequest as exc:
            return ("400", exc.expression)
        if parsed is None:
            return None
        data = b"".join(data_chunks(spool, parsed.data)) if parsed.data else b""
        assert len(data) == parsed.size
        return (parsed.content_type, parsed.security_context, parsed.id, data)


def in_memory(body: bytes) -> Any:
    try:
        parsed = parse_binary_resource(body, must_be_json=True)
    except BadRequest as exc:
        return ("400", exc.expression)
    if parsed is None:
        return None
    return (parsed.content_type, parsed.security_context, parsed.id, parsed.data)


def _binary(**elements: Any) -> bytes:
    return json.dumps({"resourceType": "Binary", "contentType": "a/b", **elements}).encode()


@pytest.mark.parametrize(
    "body",
    [
        _binary(data=B64),
        json.dumps(
            {"data": B64, "id": "x1", "securityContext": {"reference": "Patient/1"}}
            | {"contentType": "a/b", "resourceType": "Binary"}
        ).encode(),
        _binary(data=WRAPPED),  # "\n" escapes inside the runs
        _binary(data=B64).replace(b"/", b"\\/"),  # "\/" escapes
        json.dumps(
            {"resourceType": "Binary", "contentType": "a/b", "data": B64}, indent=2
        ).encode(),
        _binary(data=B64[:-1]),
        _binary(data=B64[:100] + "=" + B64[100:]),
        _binary(data=""),
        _binary(data=B64, text={"div": "x"}),
        _binary(data="AAAA", foo=[1, {"a": "b" * (2 * RUN)}]),
        _binary(data="AAAA", language="A" * (2 * RUN)),
        _binary(),
        json.dumps({"resourceType": "Patient", "photo": B64}).encode(),
        b'{"resourceType":"Binary","contentType":"a/b","data":"AAAA","data":"BBBB"}',
        b'{"resourceType":"Patient","a":1,"a":2}',
        b'{"resourceType":"Binary","contentType":"a/b","data":"\\u0041AAA"}',
        b'{"resourceType":"Binary","contentType":"a/b","data":"\\u0041' + b"A" * 8191 + b'"}',
        b'{"resourceType":"Binary","contentType":"a/b","data":"' + B64.encode()[:5000],
        b"[1,2,3]",
        b"garbage",
    ],
)
def test_streamed_parse_answers_as_the_in_memory_one(body: bytes) -> None:
    assert streamed(body) == in_memory(body)


def test_a_nul_of_the_clients_own_is_refused() -> None:
    body = b'{"resourceType":"Binary","contentType":"a/b","data":"AAAA\\u0000"}'
    assert streamed(body) == ("400", "Binary")


@pytest.mark.parametrize("shift", range(-6, 3))
def test_a_short_token_across_a_block_boundary_is_left_alone(shift: int) -> None:
    """``true`` (or a number) split by the reader's block boundary is not a long run: it must
    reach the parser as it is, wherever the boundary falls."""
    head = b'{"resourceType":"Patient","pad":"'
    tail = b'","flag":true,"n":12345678}'
    pad = b"-" * (BLOCK - len(head) - len(b'","flag":') + shift)
    body = head + pad + tail
    assert streamed(body) is None  # well-formed, not a Binary: stored as it is
    assert in_memory(body) is None
