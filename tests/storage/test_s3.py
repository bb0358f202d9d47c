"""What only the S3 store promises, against a real SeaweedFS: multipart uploads in bounded memory,
nothing left behind by a failed upload, one object per content across nodes, leftovers, ranges,
addressing and the faults an operator sees."""

from __future__ import annotations

import hashlib
import os
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import anyio
import pytest

from fhirbin.faults import DependencyUnavailable
from fhirbin.storage.s3 import S3BlobStore
from tests.s3_support import Seaweed, start_seaweed

pytestmark = pytest.mark.anyio

MIB = 1 << 20
PART = 5 * MIB


class UploadAbortedError(Exception):
    pass


async def chunks(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def make_store(seaweed: Seaweed, url: str | None = None, **options: Any) -> S3BlobStore:
    store = S3BlobStore.from_url(
        url or seaweed.fresh_url(), endpoint_url=seaweed.endpoint, env=seaweed.env
    )
    if options:
        store = S3BlobStore(store.location, **options)
    return store


@pytest.fixture
async def store(seaweed: Seaweed) -> AsyncIterator[S3BlobStore]:
    s3 = make_store(seaweed, part_size=PART)
    yield s3
    await s3.close()


def objects(seaweed: Seaweed, store: S3BlobStore) -> list[str]:
    """Every object under the store's prefix, seen by a client of our own."""
    listed = seaweed.client().list_objects_v2(Bucket=store.bucket, Prefix=store.location.prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def unfinished(seaweed: Seaweed, store: S3BlobStore) -> list[str]:
    listed = seaweed.client().list_multipart_uploads(
        Bucket=store.bucket, Prefix=store.location.prefix
    )
    return [u["Key"] for u in listed.get("Uploads", [])]


async def test_large_body_goes_up_in_parts_with_memory_far_below_its_size(
    store: S3BlobStore, seaweed: Seaweed
) -> None:
    piece, count = os.urandom(64 * 1024), 1536  # 96 MiB: 19 parts of 5 MiB and a bit
    expected = hashlib.sha256(piece * count).hexdigest()

    async def body() -> AsyncIterator[bytes]:
        for _ in range(count):
            yield piece

    await store.check()  # the client's service model (~7 MiB) is loaded once, not per upload
    tracemalloc.start()
    try:
        info = await store.put(body())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.key == expected
    assert info.size == 96 * MIB
    # The part being filled and its copy, plus two parts in flight (each copied once more by
    # the HTTP client): about 6 parts whatever the body's size.
    assert peak < 40 * MIB, f"peak traced memory {peak / MIB:.1f} MiB"
    name = f"{store.location.prefix}/blobs/{expected[:2]}/{expected[2:4]}/{expected}"
    assert objects(seaweed, store) == [name]
    assert unfinished(seaweed, store) == []
    head = seaweed.client().head_object(Bucket=store.bucket, Key=name)
    assert head["ContentLength"] == 96 * MIB


async def test_failing_iterator_after_several_parts_leaves_no_object_and_no_upload(
    store: S3BlobStore, seaweed: Seaweed
) -> None:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(3 * PART // MIB):
            yield os.urandom(MIB)
        raise UploadAbortedError

    with pytest.raises(UploadAbortedError):
        await store.put(body())
    assert objects(seaweed, store) == []
    assert unfinished(seaweed, store) == []


async def test_cancelled_multipart_upload_is_aborted(store: S3BlobStore, seaweed: Seaweed) -> None:
    async def stalls_after_two_parts() -> AsyncIterator[bytes]:
        yield os.urandom(2 * PART)
        await anyio.sleep_forever()
        yield b"never"

    with anyio.move_on_after(2) as scope:
        await store.put(stalls_after_two_parts())
    assert scope.cancelled_caught
    assert objects(seaweed, store) == []
    assert unfinished(seaweed, store) == []


async def test_same_content_from_two_nodes_is_one_object(seaweed: Seaweed) -> None:
    url = seaweed.fresh_url()
    node_a, node_b = make_store(seaweed, url), make_store(seaweed, url)
    data = os.urandom(3000)
    try:
        # At once: both may copy, to the same name, so still one object.
        async with anyio.create_task_group() as tg:
            tg.start_soon(node_a.put, chunks([data]))
            tg.start_soon(node_b.put, chunks([data]))
        staged = await node_b.stage(chunks([data]))
        assert await staged.publish() is False
        await staged.discard()
        key = hashlib.sha256(data).hexdigest()
        assert objects(seaweed, node_a) == [
            f"{url[len('s3://fhirbin-test/') :]}/blobs/{key[:2]}/{key[2:4]}/{key}"
        ]
        assert [b.key async for b in node_a.stored()] == [key]
    finally:
        await node_a.close()
        await node_b.close()


async def test_leftovers_lists_and_removes_a_stale_unfinished_upload(
    store: S3BlobStore, seaweed: Seaweed
) -> None:
    client = seaweed.client()
    prefix = store.location.prefix
    client.create_multipart_upload(Bucket=store.bucket, Key=f"{prefix}/tmp/crashed-node")
    client.put_object(Bucket=store.bucket, Key=f"{prefix}/tmp/crashed-single", Body=b"half")
    published = await store.put(chunks([b"published"]))

    assert await store.leftovers(3600, remove=True) == []  # young: maybe still uploading
    await anyio.sleep(1.1)  # ages are in whole seconds
    found = await store.leftovers(1, remove=False)
    names = sorted(left.name for left in found)
    assert len(names) == 2
    assert names[0].endswith(f"{prefix}/tmp/crashed-single")
    assert names[1].startswith("unfinished upload ")
    assert names[1].endswith(f"{prefix}/tmp/crashed-node")
    assert len(await store.leftovers(1, remove=True)) == 2
    assert await store.leftovers(0, remove=False) == []
    assert unfinished(seaweed, store) == []
    assert await store.exists(published.key)


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, None), (PART - 1, PART + 1), (PART, 2 * PART), (3, 2 * PART + 7), (2 * PART, None)],
)
async def test_ranges_across_part_boundaries_are_byte_exact(
    store: S3BlobStore, start: int, end: int | None
) -> None:
    data = os.urandom(2 * PART + 1000)
    staged = await store.stage(chunks([data[i : i + MIB] for i in range(0, len(data), MIB)]))
    try:
        assert b"".join([p async for p in staged.read(start, end)]) == data[start:end]
        assert staged.path is None
        await staged.publish()
    finally:
        await staged.discard()
    body = store.open(staged.info.key, start, end)
    assert body.path is None
    assert b"".join([p async for p in body]) == data[start:end]


async def presigned(store: S3BlobStore, key: str) -> str:
    """The URL the client would use for ``key`` (a presigned URL is built without I/O)."""
    client = await store._client()
    return await client.generate_presigned_url(
        "get_object", Params={"Bucket": store.bucket, "Key": key}
    )


async def test_path_style_addressing_is_used_for_an_endpoint(seaweed: Seaweed) -> None:
    store = make_store(seaweed)
    # Credentials given, so the client never looks further along the chain (instance metadata).
    aws = S3BlobStore.from_url("s3://my-bucket/p", env={**seaweed.env, "AWS_REGION": "eu-west-1"})
    try:
        info = await store.put(chunks([b"addressed by path"]))
        url = await presigned(store, store._blob_name(info.key))
        assert url.startswith(f"{seaweed.endpoint}/{store.bucket}/{store.location.prefix}/blobs/")
        assert (await anext(aiter(store.open(info.key)))) == b"addressed by path"
        # AWS itself: virtual-hosted, the bucket in the host name.
        assert (await presigned(aws, "k")).startswith("https://my-bucket.s3.")
    finally:
        await store.close()
        await aws.close()


def test_from_url_reads_bucket_prefix_and_the_aws_variables() -> None:
    store = S3BlobStore.from_url(
        "s3://my-bucket/some/prefix/",
        endpoint_url="http://127.0.0.1:9",
        env={"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "s3cret", "AWS_REGION": "eu-x"},
    )
    assert (store.bucket, store.location.prefix) == ("my-bucket", "some/prefix")
    assert store.location.region == "eu-x"
    assert "s3cret" not in repr(store.location)
    with pytest.raises(ValueError, match="FHIRBIN_STORAGE_URL"):
        S3BlobStore.from_url("s3:///nobucket", env={})


async def test_wrong_secret_names_the_setting_and_never_the_secret(seaweed: Seaweed) -> None:
    env = {**seaweed.env, "AWS_SECRET_ACCESS_KEY": "wrong-secret-value"}
    store = S3BlobStore.from_url(seaweed.fresh_url(), endpoint_url=seaweed.endpoint, env=env)
    try:
        with pytest.raises(DependencyUnavailable) as caught:
            await store.check()
    finally:
        await store.close()
    assert "AWS_SECRET_ACCESS_KEY" in caught.value.detail
    assert "wrong-secret-value" not in str(caught.value)
    assert caught.value.dependency == "content store"


async def test_unknown_access_key_names_the_setting(seaweed: Seaweed) -> None:
    env = {**seaweed.env, "AWS_ACCESS_KEY_ID": "nobody"}
    store = S3BlobStore.from_url(seaweed.fresh_url(), endpoint_url=seaweed.endpoint, env=env)
    try:
        with pytest.raises(DependencyUnavailable, match="AWS_ACCESS_KEY_ID"):
            await store.check()
    finally:
        await store.close()


async def test_missing_bucket_names_the_setting_and_the_bucket(seaweed: Seaweed) -> None:
    store = make_store(seaweed, "s3://no-such-bucket/p")
    try:
        with pytest.raises(DependencyUnavailable, match=r"FHIRBIN_STORAGE_URL.*'no-such-bucket'"):
            await store.check()
        # A read says so too. (A write would not: SeaweedFS creates buckets on PUT for admins.)
        with pytest.raises(DependencyUnavailable, match="no-such-bucket"):
            await anext(aiter(store.open("0" * 64)))
    finally:
        await store.close()


async def test_open_does_no_io(seaweed: Seaweed) -> None:
    # Nothing listens on port 9: opening must not fail, only iterating.
    store = S3BlobStore.from_url("s3://b/p", endpoint_url="http://127.0.0.1:9", env=seaweed.env)
    body = store.open("0" * 64)
    with pytest.raises(DependencyUnavailable, match=r"127\.0\.0\.1:9"):
        await anext(aiter(body))
    await store.close()


async def test_a_stopped_server_fails_fast_and_the_same_store_recovers(tmp_path: Path) -> None:
    with start_seaweed(tmp_path / "private") as server:
        store = make_store(server)
        try:
            info = await store.put(chunks([b"survives a restart"]))
            server.stop()
            for attempt in (store.check(), store.exists(info.key)):
                started = time.monotonic()
                with pytest.raises(DependencyUnavailable, match="cannot reach"):
                    await attempt
                assert time.monotonic() - started < 10
            server.start()
            await store.check()
            assert b"".join([p async for p in store.open(info.key)]) == b"survives a restart"
        finally:
            await store.close()
