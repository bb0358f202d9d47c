"""UploadSink (storage/sink.py): page cache up to ``direct_from``, O_DIRECT after it, falling
back without loss when the filesystem refuses; and FilesystemBlobStore's two-thread pipeline.

Real files in the test's temp folder (on this machine a filesystem that accepts O_DIRECT).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import mmap
import os
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from fhirbin.storage.filesystem import FilesystemBlobStore
from fhirbin.storage.sink import ALIGN, STAGING, UploadSink

pytestmark = pytest.mark.anyio

DIRECT_FROM = 10_000  # not a multiple of ALIGN: the switch waits for the next boundary


def pieces(data: bytes, seed: int) -> Iterator[list[bytes]]:
    """``data`` in batches of odd-sized chunks, as a server would hand them over."""
    rng = random.Random(seed)
    at = 0
    while at < len(data):
        batch = []
        for _ in range(rng.randint(1, 5)):
            size = rng.choice([1, 7, 4096, 5000, 65_536, 300_001])
            batch.append(data[at : at + size])
            at += size
        yield [c for c in batch if c]


def direct_works(folder: Path) -> bool:
    """Whether this filesystem takes an O_DIRECT write (not every one does, e.g. older tmpfs)."""
    fd = os.open(folder / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
    buffer = mmap.mmap(-1, ALIGN)
    try:
        os.write(fd, buffer)
    except OSError:
        return False
    finally:
        buffer.close()
        os.close(fd)
        (folder / "probe").unlink()
    return True


def write_through(path: Path, data: bytes, seed: int = 1) -> UploadSink:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    sink = UploadSink(fd, direct_from=DIRECT_FROM)
    for batch in pieces(data, seed):
        sink.write(batch)
    sink.seal()
    return sink


@pytest.mark.parametrize(
    "size",
    [0, 1, ALIGN - 1, ALIGN, DIRECT_FROM - 1, DIRECT_FROM, DIRECT_FROM + 1, STAGING + 12_345],
)
def test_every_size_is_stored_exactly(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    sink = write_through(tmp_path / "blob", data, seed=size)
    assert (tmp_path / "blob").read_bytes() == data
    assert sink.hasher.hexdigest() == hashlib.sha256(data).hexdigest()
    assert sink.written == size
    # Past direct_from the rest goes out with O_DIRECT, unless it all fits before the next
    # block boundary (or the filesystem refuses O_DIRECT: then the page cache, losing nothing).
    past_boundary = size > -(-DIRECT_FROM // ALIGN) * ALIGN
    assert sink.direct_used == (past_boundary and direct_works(tmp_path))
    assert sink.fd == -1  # sealed closes


def test_a_refused_direct_write_falls_back_to_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    refused: list[int] = []

    def write(fd: int, data: Any) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refused.append(len(data))
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    data = os.urandom(STAGING * 2 + 999)
    sink = write_through(tmp_path / "blob", data)
    assert refused == [STAGING]  # tried once, then never again
    assert (tmp_path / "blob").read_bytes() == data
    assert sink.hasher.hexdigest() == hashlib.sha256(data).hexdigest()


def test_a_filesystem_without_o_direct_gets_the_page_cache_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fcntl = fcntl.fcntl

    def no_direct(fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == fcntl.F_SETFL and arg & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return int(real_fcntl(fd, cmd, arg))

    monkeypatch.setattr(fcntl, "fcntl", no_direct)
    data = os.urandom(STAGING + 5)
    sink = write_through(tmp_path / "blob", data)
    assert not sink.direct_used
    assert (tmp_path / "blob").read_bytes() == data


def test_a_short_direct_write_is_an_error_not_a_corrupt_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write

    def short(fd: int, data: Any) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            return int(real_write(fd, data[:ALIGN]))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", short)
    with pytest.raises(OSError, match="short O_DIRECT write"):
        write_through(tmp_path / "blob", os.urandom(STAGING * 2))


async def test_a_large_upload_through_the_store_is_exact_with_both_threads(
    tmp_path: Path,
) -> None:
    store = FilesystemBlobStore(tmp_path / "blobs", direct_from=1 << 20)
    data = os.urandom(40 * (1 << 20) + 777)

    async def body() -> AsyncIterator[bytes]:
        for batch in pieces(data, seed=7):
            for chunk in batch:
                yield chunk

    info = await store.put(body())
    assert info.key == hashlib.sha256(data).hexdigest()
    assert info.size == len(data)
    path = store.open(info.key).path
    assert path is not None
    assert path.read_bytes() == data
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []
