"""The BlobStore contract, run against every store, plus what only the filesystem store promises."""

from __future__ import annotations

import hashlib
import os
import stat
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterable
from contextlib import aclosing
from pathlib import Path

import anyio
import pytest

from fhirbin.storage.base import BlobNotFound, BlobStore
from fhirbin.storage.cached import SMALL, CachedBlobStore
from fhirbin.storage.filesystem import FilesystemBlobStore
from fhirbin.storage.memory import MemoryBlobStore
from fhirbin.storage.s3 import S3BlobStore
from tests.s3_support import Seaweed

pytestmark = pytest.mark.anyio

MIB = 1 << 20


class UploadAbortedError(Exception):
    """Stands in for a size limit or a client disconnect raised by the chunk iterator."""


@pytest.fixture(params=["filesystem", "memory", "s3"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, seaweed: Seaweed
) -> AsyncIterator[BlobStore]:
    if request.param == "filesystem":
        yield FilesystemBlobStore(tmp_path / "blobs", chunk_size=1000)
    elif request.param == "memory":
        yield MemoryBlobStore(chunk_size=1000)
    else:
        s3 = S3BlobStore.from_url(
            seaweed.fresh_url(), endpoint_url=seaweed.endpoint, env=seaweed.env
        )
        s3.chunk_size = 1000
        yield s3
        await s3.close()


async def chunks(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def failing_chunks(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    raise UploadAbortedError


async def read(store: BlobStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([piece async for piece in store.open(key, start, end)])


def blob_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.parent != root / "tmp"]


def temp_files(root: Path) -> list[Path]:
    return list((root / "tmp").glob("*")) if (root / "tmp").exists() else []


async def test_put_then_open_returns_the_same_bytes_under_their_sha256(store: BlobStore) -> None:
    data = os.urandom(2500)
    info = await store.put(chunks([data[:1], data[1:1200], data[1200:]]))
    assert info.key == hashlib.sha256(data).hexdigest()
    assert info.size == len(data)
    assert await store.exists(info.key)
    assert await read(store, info.key) == data


async def test_open_streams_in_pieces_of_chunk_size(store: BlobStore) -> None:
    info = await store.put(chunks([b"x" * 2500]))
    assert [len(p) async for p in store.open(info.key)] == [1000, 1000, 500]


async def test_identical_content_is_stored_once(store: BlobStore, tmp_path: Path) -> None:
    first = await store.put(chunks([b"same bytes"]))
    second = await store.put(chunks([b"same ", b"bytes"]))
    assert first == second
    assert [b.key async for b in store.stored()] == [first.key]
    if isinstance(store, FilesystemBlobStore):
        assert blob_files(store.root) == [store.local_file(first.key)]
        assert temp_files(store.root) == []


async def test_staged_bytes_are_invisible_until_published(store: BlobStore) -> None:
    data = os.urandom(3000)
    staged = await store.stage(chunks([data[:100], data[100:]]))
    try:
        assert staged.info.key == hashlib.sha256(data).hexdigest()
        assert staged.info.size == 3000
        assert not await store.exists(staged.info.key)
        # Random access to what was staged, as inspection of a PDF needs.
        assert b"".join([p async for p in staged.read(2900)]) == data[2900:]
        assert b"".join([p async for p in staged.read(10, 20)]) == data[10:20]
        assert await staged.publish() is True
    finally:
        await staged.discard()
    assert await read(store, staged.info.key) == data
    assert [b.key async for b in store.stored()] == [staged.info.key]
    assert await store.leftovers(0, remove=False) == []


async def test_a_discarded_stage_leaves_nothing(store: BlobStore) -> None:
    staged = await store.stage(chunks([b"refused by screening"]))
    await staged.discard()
    await staged.discard()  # twice is fine
    assert not await store.exists(staged.info.key)
    assert [b async for b in store.stored()] == []
    assert await store.leftovers(0, remove=False) == []


async def test_publishing_stored_content_again_refreshes_its_age(store: BlobStore) -> None:
    first = await store.put(chunks([b"same bytes"]))
    before = await store.stat(first.key)
    assert before is not None
    assert before.size == len(b"same bytes")
    # S3's Last-Modified counts whole seconds.
    await anyio.sleep(1.05 if isinstance(store, S3BlobStore) else 0.05)
    staged = await store.stage(chunks([b"same bytes"]))
    try:
        assert await staged.publish() is False
        # Published again (after gc raced it away, service.py) it is there once more.
        await store.delete(first.key)
        await staged.publish()
    finally:
        await staged.discard()
    after = await store.stat(first.key)
    assert after is not None
    assert after.modified > before.modified
    assert await read(store, first.key) == b"same bytes"


async def test_stat_and_stored_list_sizes_and_ages(store: BlobStore) -> None:
    started = time.time() - 1
    a = await store.put(chunks([b"a" * 10]))
    b = await store.put(chunks([b"b" * 20]))
    listed = {blob.key: blob async for blob in store.stored()}
    assert {key: blob.size for key, blob in listed.items()} == {a.key: 10, b.key: 20}
    assert all(blob.modified >= started for blob in listed.values())
    assert await store.stat(a.key) == listed[a.key]
    assert await store.stat("0" * 64) is None
    await store.check()


async def test_empty_content_is_a_valid_blob(store: BlobStore) -> None:
    info = await store.put(chunks([]))
    assert info.key == hashlib.sha256(b"").hexdigest()
    assert info.size == 0
    assert await store.exists(info.key)
    assert await read(store, info.key) == b""


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, None, slice(0, 2500)),
        (10, 20, slice(10, 20)),
        (999, 1001, slice(999, 1001)),
        (1500, None, slice(1500, 2500)),
        (0, 1, slice(0, 1)),
        (2000, 9000, slice(2000, 2500)),
        (2500, None, slice(0, 0)),
        (9000, None, slice(0, 0)),
        (30, 30, slice(0, 0)),
        (30, 10, slice(0, 0)),
    ],
)
async def test_open_returns_exactly_the_requested_range(
    store: BlobStore, start: int, end: int | None, expected: slice
) -> None:
    data = os.urandom(2500)
    info = await store.put(chunks([data]))
    assert await read(store, info.key, start, end) == data[expected]


async def test_negative_range_bounds_are_rejected(store: BlobStore) -> None:
    info = await store.put(chunks([b"abc"]))
    with pytest.raises(ValueError, match="non-negative"):
        await read(store, info.key, -1)


async def test_many_small_chunks_are_reassembled_in_order(store: BlobStore) -> None:
    parts = [bytes([i % 256]) * (i % 7) for i in range(5000)]
    info = await store.put(chunks(parts))
    assert info.size == sum(map(len, parts))
    assert await read(store, info.key) == b"".join(parts)


async def test_failing_chunk_iterator_propagates_and_publishes_nothing(store: BlobStore) -> None:
    # More than one write buffer, so the filesystem store has already written to its temp file.
    written = os.urandom(3 * MIB)
    with pytest.raises(UploadAbortedError):
        await store.put(failing_chunks([written[i : i + 65536] for i in range(0, 3 * MIB, 65536)]))
    assert not await store.exists(hashlib.sha256(written).hexdigest())
    if isinstance(store, FilesystemBlobStore):
        assert blob_files(store.root) == []
        assert temp_files(store.root) == []


async def test_cancelled_upload_publishes_nothing_and_leaves_no_temp_file(store: BlobStore) -> None:
    async def stalls_after_two_mib() -> AsyncIterator[bytes]:
        yield b"a" * (2 * MIB)
        await anyio.sleep_forever()
        yield b"never"

    with anyio.move_on_after(0.5) as scope:
        await store.put(stalls_after_two_mib())
    assert scope.cancelled_caught
    assert not await store.exists(hashlib.sha256(b"a" * (2 * MIB)).hexdigest())
    if isinstance(store, FilesystemBlobStore):
        assert blob_files(store.root) == []
        assert temp_files(store.root) == []


async def test_unknown_key_raises_blob_not_found_on_first_iteration(store: BlobStore) -> None:
    key = hashlib.sha256(b"never stored").hexdigest()
    with pytest.raises(BlobNotFound):
        await anext(aiter(store.open(key)))
    assert not await store.exists(key)
    assert store.open(key).path is None


@pytest.mark.parametrize(
    "key", ["../../etc/passwd", "", "A" * 64, "a" * 63, "a" * 65, "/" + "a" * 63, "ab/cd"]
)
async def test_malformed_key_is_not_found_and_never_touches_the_filesystem(
    store: BlobStore, key: str
) -> None:
    with pytest.raises(BlobNotFound):
        await read(store, key)
    assert not await store.exists(key)
    assert store.open(key).path is None
    await store.delete(key)  # no error, nothing removed


async def test_delete_removes_the_blob_and_is_idempotent(store: BlobStore) -> None:
    info = await store.put(chunks([b"to be deleted"]))
    await store.delete(info.key)
    assert not await store.exists(info.key)
    with pytest.raises(BlobNotFound):
        await read(store, info.key)
    await store.delete(info.key)


async def test_small_content_comes_whole_and_only_for_small_blobs(store: BlobStore) -> None:
    cached = CachedBlobStore(store)
    small = await cached.put(chunks([b"small content"]))
    if store.open(small.key).path is None:
        # A store without local files: the cache fills as a whole small body streams past.
        assert cached.small_content(small.key, small.size) is None
        assert b"".join([p async for p in cached.open_whole(small.key, small.size)])
    assert cached.small_content(small.key, small.size) == b"small content"
    assert cached.small_content(small.key, small.size) == b"small content"  # from memory
    large = await cached.put(chunks([os.urandom(SMALL + 1)]))
    assert cached.small_content(large.key, large.size) is None
    assert cached.small_content("0" * 64, 10) is None  # unknown
    await cached.delete(small.key)
    assert cached.small_content(small.key, small.size) is None  # forgotten with the blob


async def test_blob_can_be_stored_again_after_delete(store: BlobStore) -> None:
    info = await store.put(chunks([b"phoenix"]))
    await store.delete(info.key)
    assert await store.put(chunks([b"phoenix"])) == info
    assert await read(store, info.key) == b"phoenix"


async def test_memory_store_has_no_local_path() -> None:
    store = MemoryBlobStore()
    info = await store.put(chunks([b"abc"]))
    assert store.open(info.key).path is None


# Filesystem-only promises.


@pytest.fixture
def fs_store(tmp_path: Path) -> FilesystemBlobStore:
    return FilesystemBlobStore(tmp_path / "blobs")


async def test_published_file_is_read_only_and_fanned_out_by_hash(
    fs_store: FilesystemBlobStore,
) -> None:
    info = await fs_store.put(chunks([b"immutable"]))
    path = fs_store.open(info.key).path
    assert path == fs_store.root / info.key[:2] / info.key[2:4] / info.key
    assert path.read_bytes() == b"immutable"
    # Health data: the service user's alone (docs/operations.md, "Data folder").
    assert stat.S_IMODE(path.stat().st_mode) == 0o400
    for folder in (fs_store.root, path.parent, path.parent.parent, fs_store.root / "tmp"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


async def test_large_put_in_small_chunks_keeps_memory_flat(fs_store: FilesystemBlobStore) -> None:
    piece = os.urandom(64 * 1024)
    total = 48 * MIB
    expected = hashlib.sha256()
    for _ in range(total // len(piece)):
        expected.update(piece)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(total // len(piece)):
            yield piece

    tracemalloc.start()
    try:
        info = await fs_store.put(body())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.size == total
    assert info.key == expected.hexdigest()
    assert peak < 8 * MIB, f"peak traced memory {peak / MIB:.1f} MiB"


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
async def test_stopping_a_read_early_closes_the_file(fs_store: FilesystemBlobStore) -> None:
    info = await fs_store.put(chunks([os.urandom(3 * MIB)]))
    before = len(os.listdir("/proc/self/fd"))
    async with aclosing(aiter(fs_store.open(info.key))) as stream:  # type: ignore[type-var]
        async for _ in stream:
            assert len(os.listdir("/proc/self/fd")) == before + 1
            break
    assert len(os.listdir("/proc/self/fd")) == before


async def test_leftovers_are_only_abandoned_temp_files(fs_store: FilesystemBlobStore) -> None:
    info = await fs_store.put(chunks([b"published"]))
    temp_dir = fs_store.root / "tmp"
    abandoned = temp_dir / "abandoned.part"
    fresh = temp_dir / "in-progress.part"
    abandoned.write_bytes(b"half an upload")
    fresh.write_bytes(b"still uploading")
    an_hour_ago = time.time() - 3600
    os.utime(abandoned, (an_hour_ago, an_hour_ago))

    listed = await fs_store.leftovers(600, remove=False)
    assert [(left.name, left.size) for left in listed] == [("tmp/abandoned.part", 14)]
    assert abandoned.exists()
    assert await fs_store.leftovers(600, remove=True) == listed
    assert not abandoned.exists()
    assert fresh.exists()
    assert await fs_store.exists(info.key)


async def test_leftovers_of_a_new_root_are_none(tmp_path: Path) -> None:
    assert await FilesystemBlobStore(tmp_path / "nothing-yet").leftovers(0, remove=True) == []


async def test_a_full_disk_is_out_of_space_and_leaves_nothing(tmp_path: Path) -> None:
    """A real full filesystem: a 4 MiB tmpfs (root only, as CI runs)."""
    from fhirbin.faults import OutOfSpace
    from tests.storage.support import tiny_filesystem

    with tiny_filesystem(tmp_path / "tiny", size_kib=4096) as root:
        store = FilesystemBlobStore(root / "blobs")
        with pytest.raises(OutOfSpace):
            await store.put(chunks([os.urandom(MIB)] * 8))
        assert [b async for b in store.stored()] == []
        assert temp_files(store.root) == []
        # Room again (nothing was left behind): the same store works without a restart.
        info = await store.put(chunks([b"fits"]))
        assert await read(store, info.key) == b"fits"
