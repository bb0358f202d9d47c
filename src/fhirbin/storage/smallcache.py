"""Small native contents kept in memory, by SHA-256 (FilesystemBlobStore.small_content).

Content is immutable and addressed by its hash, so a cached copy can never go stale, on this
node or any other. Reads of small Binaries (thumbnails, HL7 attachments, small PDFs) then cost
no file open and no read: measured on the 1 KiB read, the open and read released and re-took
the GIL twice per request under load; the FHIR JSON form of a small Binary, streamed from the
file through worker threads, cost three thread hand-offs per request. Bounded by total bytes;
least recently used goes first.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

#: Contents up to this size are kept in memory (thumbnails, HL7 attachments, small PDFs).
SMALL = 64 * 1024


class SmallContentCache:
    def __init__(self, max_item: int = SMALL, max_total: int = 64 * 1024 * 1024) -> None:
        self.max_item = max_item
        self.max_total = max_total
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._total = 0

    def forget(self, key: str) -> None:
        data = self._items.pop(key, None)
        if data is not None:
            self._total -= len(data)

    def get(self, key: str, path: Path, size: int) -> bytes | None:
        """The content of ``key`` (at ``path``), or None when it is too large to keep."""
        if size > self.max_item:
            return None
        data = self._items.get(key)
        if data is not None:
            self._items.move_to_end(key)
            return data
        data = path.read_bytes()
        if len(data) != size:  # not what the catalogue says: let the caller stream and fail
            return None
        self._items[key] = data
        self._total += len(data)
        while self._total > self.max_total:
            _, dropped = self._items.popitem(last=False)
            self._total -= len(dropped)
        return data
