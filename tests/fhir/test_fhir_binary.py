"""fhirbin.fhir.binary: the streamed FHIR JSON Binary and the metadata header formats."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhirbin.fhir.binary import (
    SUBSETTED_TAG,
    ContentSizeMismatchError,
    base64_chunks,
    binary_json_head,
    binary_json_length,
    binary_json_parts,
    binary_json_stream,
    binary_json_tail,
    binary_summary_json,
    etag,
    http_date,
    instant,
)
from fhirbin.metadata.base import BinaryVersion

WHEN = datetime(2026, 11, 26, 11, 33, 47, 123456, tzinfo=UTC)


@dataclass(frozen=True)
class Meta:
    id: str = "abc"
    version: int = 3
    last_updated: datetime = WHEN
    content_type: str = "text/plain"
    security_context: str | None = None
    size: int = 5


async def _chunks(parts: Sequence[bytes], log: list[str] | None = None) -> AsyncIterator[bytes]:
    for i, part in enumerate(parts):
        if log is not None:
            log.append(f"in{i}")
        yield part


async def _collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([piece async for piece in stream])


def _expected(meta: Meta, data: bytes) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Binary",
        "id": meta.id,
        "meta": {"versionId": str(meta.version), "lastUpdated": instant(meta.last_updated)},
        "contentType": meta.content_type,
    }
    if meta.security_context is not None:
        resource["securityContext"] = {"reference": meta.security_context}
    if data:
        resource["data"] = base64.b64encode(data).decode()
    return resource


@pytest.mark.parametrize(
    ("dt", "text"),
    [
        (WHEN, "2026-11-26T11:33:47.123456Z"),
        (WHEN.replace(microsecond=0), "2026-11-26T11:33:47Z"),
        (WHEN.replace(microsecond=1000), "2026-11-26T11:33:47.001000Z"),
        (
            datetime(2026, 11, 26, 13, 33, 47, tzinfo=timezone(timedelta(hours=2))),
            "2026-11-26T11:33:47Z",
        ),
    ],
)
def test_instant_is_utc_with_z_and_microseconds_only_when_non_zero(dt: datetime, text: str) -> None:
    assert instant(dt) == text


def test_http_date_is_imf_fixdate_in_gmt() -> None:
    assert http_date(WHEN) == "Thu, 26 Nov 2026 11:33:47 GMT"
    east = datetime(2026, 11, 26, 12, 33, 47, tzinfo=timezone(timedelta(hours=1)))
    assert http_date(east) == "Thu, 26 Nov 2026 11:33:47 GMT"


def test_naive_datetimes_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        instant(datetime(2026, 11, 26))
    with pytest.raises(ValueError, match="timezone-aware"):
        http_date(datetime(2026, 11, 26))


def test_etag_is_weak_version_id() -> None:
    assert etag(3) == 'W/"3"'


def test_compact_head_opens_data_and_tail_closes_resource() -> None:
    meta = Meta(security_context="DocumentReference/9")
    assert binary_json_head(meta) == (
        b'{"resourceType":"Binary","id":"abc","meta":{"versionId":"3",'
        b'"lastUpdated":"2026-11-26T11:33:47.123456Z"},"contentType":"text/plain",'
        b'"securityContext":{"reference":"DocumentReference/9"},"data":"'
    )
    assert binary_json_tail() == b'"}'
    assert binary_json_tail(meta=meta) == b'"}'


def test_security_context_is_omitted_when_not_set() -> None:
    assert b"securityContext" not in binary_json_head(Meta())


def test_values_are_json_escaped() -> None:
    meta = Meta(content_type='text/plain; name="a\\"b"', security_context="Patient/1")
    head, tail = binary_json_parts(meta)
    assert json.loads(head + b"aGVsbG8=" + tail)["contentType"] == 'text/plain; name="a\\"b"'


@pytest.mark.parametrize("pretty", [False, True])
def test_empty_binary_has_no_data_element_and_exact_length(pretty: bool) -> None:
    meta = Meta(size=0)
    head, tail = binary_json_parts(meta, pretty)
    assert json.loads(head) == _expected(meta, b"")
    assert tail == b""
    assert binary_json_tail(pretty, meta=meta) == b""
    out = anyio.run(_collect, binary_json_stream(meta, _chunks([]), pretty))
    assert json.loads(out) == _expected(meta, b"")
    assert len(out) == binary_json_length(meta, pretty)


@pytest.mark.parametrize("pretty", [False, True])
def test_output_is_byte_for_byte_json_dumps(pretty: bool) -> None:
    meta = Meta(security_context="Patient/1")
    out = anyio.run(_collect, binary_json_stream(meta, _chunks([b"he", b"llo"]), pretty))
    expected = _expected(meta, b"hello")
    if pretty:
        assert out == json.dumps(expected, indent=2).encode()
    else:
        assert out == json.dumps(expected, separators=(",", ":")).encode()


def test_metadata_dataclass_satisfies_binary_meta() -> None:
    version = BinaryVersion(
        id="abc",
        version=3,
        last_updated=WHEN,
        content_type="text/plain",
        security_context=None,
        size=5,
        sha256="0" * 64,
    )
    assert binary_json_length(version) == binary_json_length(Meta())


@settings(deadline=None, database=None)
@given(
    data=st.binary(max_size=2000),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
)
def test_base64_chunks_over_any_chunking_equals_b64encode(data: bytes, cuts: list[int]) -> None:
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    parts = [data[a:b] for a, b in itertools.pairwise(bounds)] + [b""]
    out = anyio.run(_collect, base64_chunks(_chunks(parts)))
    assert out == base64.b64encode(data)


@settings(deadline=None, database=None)
@given(
    data=st.binary(max_size=600),
    chunk=st.integers(min_value=1, max_value=64),
    pretty=st.booleans(),
    context=st.none() | st.sampled_from(["Patient/1", "https://x.org/fhir/Patient/a-1"]),
    content_type=st.sampled_from(["text/plain", 'a/b; q="\\"é"', "application/fhir+json"]),
)
def test_stream_length_is_exact_and_json_round_trips(
    data: bytes, chunk: int, pretty: bool, context: str | None, content_type: str
) -> None:
    meta = Meta(size=len(data), security_context=context, content_type=content_type)
    parts = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    out = anyio.run(_collect, binary_json_stream(meta, _chunks(parts), pretty))
    assert len(out) == binary_json_length(meta, pretty)
    head, tail = binary_json_parts(meta, pretty)
    assert out == head + base64.b64encode(data) + tail
    assert json.loads(out) == _expected(meta, data)


@pytest.mark.anyio
async def test_base64_chunks_streams_without_reading_ahead() -> None:
    log: list[str] = []
    encoder = base64_chunks(_chunks([b"abc", b"defg", b"h"], log))
    assert await anext(encoder) == b"YWJj"
    assert log == ["in0"]  # the first output came before the second chunk was asked for
    assert await anext(encoder) == b"ZGVm"  # "g" is carried
    assert log == ["in0", "in1"]
    assert [piece async for piece in encoder] == [b"Z2g="]


@pytest.mark.anyio
async def test_each_output_piece_encodes_at_most_one_chunk_plus_carry() -> None:
    parts = [b"x" * 1000, b"y", b"z" * 7, b"", b"w" * 2]
    pieces = [p async for p in base64_chunks(_chunks(parts))]
    assert len(pieces) <= len(parts) + 1
    assert max(len(p) for p in pieces) <= (1000 + 2 + 2) // 3 * 4


@pytest.mark.anyio
@pytest.mark.parametrize("parts", [[b"hell"], [b"hello", b"!"]])
async def test_stream_fails_when_content_size_differs_from_metadata(parts: list[bytes]) -> None:
    with pytest.raises(ContentSizeMismatchError, match="metadata says 5"):
        await _collect(binary_json_stream(Meta(size=5), _chunks(parts)))


def test_summary_has_no_data_and_is_tagged_subsetted() -> None:
    summary = binary_summary_json(Meta(security_context="Patient/1"))
    assert "data" not in summary
    assert summary["meta"]["tag"] == [SUBSETTED_TAG]
    assert summary["contentType"] == "text/plain"
    assert summary["securityContext"] == {"reference": "Patient/1"}
    assert summary["meta"]["versionId"] == "3"
