"""FilesystemBlobStore: content-addressed blobs as read-only files under one root folder.

This module owns the on-disk layout and the durability protocol for blobs:

    root/ab/cd/<sha256>     published blobs (two levels of fan-out on the first hex digits),
                            mode 0400; folders 0700 (health data: the service user only)
    root/tmp/<random>.part  staged uploads; renamed into place when published

All file I/O runs in worker threads so the event loop never waits on the disk. Writes are batched
into buffers of about 1 MiB so an upload costs one thread hop per MiB, not one per chunk.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import secrets
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO

import anyio
import anyio.to_thread

from fhirbin.faults import DependencyUnavailable, OutOfSpace
from fhirbin.storage.base import BlobInfo, BlobNotFound, Leftover, Staging, StoredBlob
from fhirbin.storage.sink import UploadSink

MIB = 1 << 20
_KEY = re.compile(r"[0-9a-f]{64}")
_TEMP_SUFFIX = ".part"
_MAX_PIECES = 1024  # chunks per buffer, however small a client's pieces are
WRITE_DEPTH = 2  # batches of an upload in flight at most (each 1 MiB or one chunk)
DIRECT_FROM = 16 * MIB


def _is_key(key: str) -> bool:
    # Only 64 lowercase hex digits ever reach the filesystem: no separators, no "..".
    return _KEY.fullmatch(key) is not None


def _fsync_dir(directory: Path) -> None:
    # A rename or a new entry is durable only once the directory itself is fsynced.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ensure_dir(directory: Path) -> None:
    """Create ``directory`` and any missing parents, making each new entry durable."""
    if directory.is_dir():
        return
    _ensure_dir(directory.parent)
    try:
        # Health data: folders private to the service user (docs/operations.md).
        directory.mkdir(mode=0o700)
    except FileExistsError:
        return  # a concurrent put created it; it made it durable
    _fsync_dir(directory.parent)


class _Lane:
    """Runs functions on the loop's worker threads strictly one after another, in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._last: asyncio.Future[None] | None = None

    def run(
        self, function: Callable[[list[bytes]], None], batch: list[bytes]
    ) -> asyncio.Future[None]:
        previous = self._last

        async def after_previous() -> None:
            if previous is not None:
                await previous  # a failure there fails every later step of this lane
            await self._loop.run_in_executor(None, function, batch)

        self._last = asyncio.ensure_future(after_previous())
        return self._last


def _open_at(path: Path, start: int) -> BinaryIO:
    file = path.open("rb")
    # Seek, never read: the bytes before ``start`` are not touched.
    file.seek(start)
    return file


def _discard(sink: UploadSink, temp: Path) -> None:
    sink.close()
    temp.unlink(missing_ok=True)


def _store_fault(error: OSError) -> Exception:
    """What an OSError of the content folder means to the caller (faults.py)."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutOfSpace("content store", f"no space left for content ({error.strerror})")
    return DependencyUnavailable("content store", f"content folder: {error.strerror}")


class FileBody:
    """A range of a published blob; ``path`` is the file (None when it is not there)."""

    def __init__(self, store: FilesystemBlobStore, key: str, start: int, end: int | None):
        if start < 0 or (end is not None and end < 0):
            raise ValueError("range bounds must be non-negative")
        self._store = store
        self._key = key
        self._start = start
        self._end = end

    @property
    def path(self) -> Path | None:
        return self._store.local_file(self._key)

    def __aiter__(self) -> AsyncIterator[bytes]:
        if not _is_key(self._key):
            return _missing(self._key)
        return _stream(
            self._store._blob_path(self._key),
            self._key,
            self._start,
            self._end,
            self._store.chunk_size,
        )


async def _missing(key: str) -> AsyncGenerator[bytes, None]:
    raise BlobNotFound(key)
    yield b""  # pragma: no cover - makes this an async generator


async def _stream(
    path: Path, key: str, start: int, end: int | None, chunk_size: int
) -> AsyncGenerator[bytes, None]:
    try:
        # Shielded: a cancellation arriving mid-call would otherwise lose the open handle.
        with anyio.CancelScope(shield=True):
            file = await anyio.to_thread.run_sync(_open_at, path, start)
    except FileNotFoundError:
        raise BlobNotFound(key) from None
    try:
        remaining = None if end is None else max(0, end - start)
        while remaining is None or remaining > 0:
            size = chunk_size if remaining is None else min(chunk_size, remaining)
            data = await anyio.to_thread.run_sync(file.read, size)
            if not data:
                break
            if remaining is not None:
                remaining -= len(data)
            yield data
    finally:
        # Closing is one cheap syscall; doing it inline also works while being cancelled.
        file.close()


class FileStaged:
    """An upload hashed and fsynced into ``root/tmp``; publishing is an atomic rename."""

    def __init__(self, store: FilesystemBlobStore, temp: Path, info: BlobInfo) -> None:
        self._store = store
        self._temp = temp
        self._info = info

    @property
    def info(self) -> BlobInfo:
        return self._info

    @property
    def path(self) -> Path | None:
        return self._temp if self._temp.exists() else None

    def read(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        return _stream(self._temp, self._info.key, start, end, self._store.chunk_size)

    async def publish(self) -> bool:
        try:
            return await anyio.to_thread.run_sync(self._store._publish, self._temp, self._info.key)
        except OSError as error:
            raise _store_fault(error) from error

    async def discard(self) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._temp.unlink, True)


class FilesystemBlobStore(Staging):
    """A BlobStore over a local folder; its bodies carry the published file (``path``)."""

    def __init__(
        self,
        root: Path,
        *,
        chunk_size: int = MIB,
        write_buffer_size: int = MIB,
        direct_from: int = DIRECT_FROM,
    ) -> None:
        if chunk_size <= 0 or write_buffer_size <= 0:
            raise ValueError("chunk_size and write_buffer_size must be positive")
        self.root = root
        self.chunk_size = chunk_size
        self.write_buffer_size = write_buffer_size
        #: bytes of an upload past this offset are written with O_DIRECT (storage/sink.py)
        self.direct_from = direct_from
        self._temp_dir = root / "tmp"
        #: blobs this process has seen on disk (a deletion removes its key)
        self._known: dict[str, Path] = {}

    def _blob_path(self, key: str) -> Path:
        return self.root / key[:2] / key[2:4] / key

    async def stage(self, chunks: AsyncIterable[bytes]) -> FileStaged:
        # Shielded: a cancellation arriving while the thread runs would otherwise lose the handle.
        try:
            with anyio.CancelScope(shield=True):
                temp, sink = await anyio.to_thread.run_sync(self._create_temp)
        except OSError as error:
            raise _store_fault(error) from error
        size = 0
        # The chunks as received, not joined: the loop copies no content bytes at all.
        buffer: list[bytes] = []
        buffered = 0
        loop = asyncio.get_running_loop()
        # Pipelining: two lanes on the worker threads, one hashing and one writing the
        # batches, each strictly in order (so the hash is the body's; hash and store share no
        # state), while the loop goes on receiving; the loop waits only when WRITE_DEPTH
        # batches are in flight, which bounds the memory. Measured on 1 GiB (curl, 2 cores):
        # one thread doing both, one batch at a time, took 2.1-2.5 s; with both lanes and
        # O_DIRECT, 1.5-1.7 s. With one batch in flight the loop waited 0.5-0.9 s of that.
        hashing, storing = _Lane(loop), _Lane(loop)
        queued: deque[asyncio.Future[tuple[None, None]]] = deque()
        try:
            try:
                async for chunk in chunks:
                    buffer.append(chunk)
                    buffered += len(chunk)
                    size += len(chunk)
                    if buffered >= self.write_buffer_size or len(buffer) >= _MAX_PIECES:
                        if len(queued) >= WRITE_DEPTH:
                            await queued.popleft()
                        queued.append(
                            asyncio.gather(
                                hashing.run(sink.hash, buffer), storing.run(sink.store, buffer)
                            )
                        )
                        buffer = []
                        buffered = 0
                while queued:
                    await queued.popleft()
                if buffer:
                    await anyio.to_thread.run_sync(sink.write, buffer)
                await anyio.to_thread.run_sync(sink.seal)
            except OSError as error:
                raise _store_fault(error) from error
        except BaseException:
            # Shielded so that a cancelled upload (client disconnect) still cleans up after itself.
            with anyio.CancelScope(shield=True):
                # Never close the file under a running write.
                await asyncio.gather(*queued, return_exceptions=True)
                await anyio.to_thread.run_sync(_discard, sink, temp)
            raise
        return FileStaged(self, temp, BlobInfo(key=sink.hasher.hexdigest(), size=size))

    def _create_temp(self) -> tuple[Path, UploadSink]:
        _ensure_dir(self._temp_dir)
        # A private name in the same filesystem as the blobs, so publishing is an atomic rename.
        temp = self._temp_dir / f"{secrets.token_hex(16)}{_TEMP_SUFFIX}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        return temp, UploadSink(fd, direct_from=self.direct_from)

    def _publish(self, temp: Path, key: str) -> bool:
        final = self._blob_path(key)
        _ensure_dir(final.parent)
        if final.exists():
            # Identical content is already published (and durable): store it once, and make
            # it young again so that gc's grace period protects the version about to use it.
            os.utime(final)
            return False
        # Blobs are immutable and health data: readable by the service user only, and
        # read-only so that accidental in-place edits fail loudly.
        os.chmod(temp, 0o400)
        os.replace(temp, final)
        _fsync_dir(final.parent)
        return True

    def open(self, key: str, start: int = 0, end: int | None = None) -> FileBody:
        return FileBody(self, key, start, end)

    def local_file(self, key: str) -> Path | None:
        """The published file of ``key``, or None; looked up on the caller's thread."""
        if not _is_key(key):
            return None
        path = self._known.get(key)
        if path is not None:  # blobs are immutable: once seen, no need to stat on every read
            return path
        path = self._blob_path(key)
        if not path.is_file():
            return None
        if len(self._known) > 100_000:
            self._known.clear()
        self._known[key] = path
        return path

    async def exists(self, key: str) -> bool:
        return await anyio.to_thread.run_sync(self.local_file, key) is not None

    async def stat(self, key: str) -> StoredBlob | None:
        if not _is_key(key):
            return None
        try:
            info = await anyio.to_thread.run_sync(self._blob_path(key).stat)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise _store_fault(error) from error
        return StoredBlob(key, info.st_size, info.st_mtime)

    async def delete(self, key: str) -> None:
        if not _is_key(key):
            return
        # Empty fan-out folders are kept: removing them would race with a concurrent put.
        self._known.pop(key, None)
        await anyio.to_thread.run_sync(self._blob_path(key).unlink, True)

    async def stored(self) -> AsyncIterator[StoredBlob]:
        try:
            tops = await anyio.to_thread.run_sync(_subfolders, self.root)
        except OSError as error:
            raise _store_fault(error) from error
        for top in tops:
            if top.name == "tmp":
                continue
            # One fan-out folder (up to 256 subfolders) per thread hop.
            for blob in await anyio.to_thread.run_sync(_blobs_under, top):
                yield blob

    async def leftovers(self, older_than: float, *, remove: bool) -> list[Leftover]:
        try:
            return await anyio.to_thread.run_sync(self._leftovers, older_than, remove)
        except OSError as error:
            raise _store_fault(error) from error

    def _leftovers(self, older_than: float, remove: bool) -> list[Leftover]:
        cutoff = time.time() - older_than
        found: list[Leftover] = []
        try:
            entries = list(os.scandir(self._temp_dir))
        except FileNotFoundError:
            return found
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
                if not entry.is_file(follow_symlinks=False) or info.st_mtime >= cutoff:
                    continue
                if remove:
                    os.unlink(entry.path)
            except FileNotFoundError:
                continue  # finished or swept concurrently
            found.append(Leftover(f"tmp/{entry.name}", info.st_size, info.st_mtime))
        return found

    async def check(self) -> None:
        try:
            await anyio.to_thread.run_sync(self._check)
        except OSError as error:
            raise _store_fault(error) from error

    def _check(self) -> None:
        _ensure_dir(self._temp_dir)
        if not os.access(self._temp_dir, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "the content folder is not writable")

    async def close(self) -> None:
        return None


def _subfolders(root: Path) -> list[Path]:
    try:
        return sorted(Path(e.path) for e in os.scandir(root) if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []


def _blobs_under(top: Path) -> list[StoredBlob]:
    found: list[StoredBlob] = []
    for middle in _subfolders(top):
        for entry in os.scandir(middle):
            if _is_key(entry.name) and entry.is_file(follow_symlinks=False):
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                found.append(StoredBlob(entry.name, info.st_size, info.st_mtime))
    return found
