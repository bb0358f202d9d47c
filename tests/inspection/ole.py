"""A minimal OLE Compound File writer for the corpus (MS-CFB, version 3, 512-byte sectors).

Enough for a Word 97 style file with or without a VBA project (the storages olevba looks for:
``PROJECT`` and ``VBA/dir``, ``VBA/_VBA_PROJECT``). Every stream is padded to 4096 bytes so that
none lives in the mini stream, which keeps the writer short.
"""

from __future__ import annotations

import struct

FREE, END, FAT_SECTOR, NONE = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF
SECTOR = 512
STREAM = 4096


def _entry(name: str, kind: int, left: int, right: int, child: int, start: int, size: int) -> bytes:
    encoded = name.encode("utf-16-le") + b"\0\0"
    return struct.pack(
        "<64sHBBIII16sIQQIII",
        encoded,
        len(encoded),
        kind,
        1,  # black
        left,
        right,
        child,
        b"\0" * 16,
        0,
        0,
        0,
        start,
        size,
        0,  # size, high half
    )


def compound_file(*, macros: bool) -> bytes:
    """A Compound File with a ``WordDocument`` stream, plus a VBA project when ``macros``."""
    names = ["WordDocument", "PROJECT", "dir", "_VBA_PROJECT"] if macros else ["WordDocument"]
    per_stream = STREAM // SECTOR
    directory_sectors = 2
    first_stream = 1 + directory_sectors
    fat = [FAT_SECTOR, 2, END]
    starts = []
    for index in range(len(names)):
        start = first_stream + index * per_stream
        starts.append(start)
        fat += [*range(start + 1, start + per_stream), END]
    fat += [FREE] * (SECTOR // 4 - len(fat))
    stream_of = dict(zip(names, starts, strict=True))
    if macros:  # root: WordDocument < PROJECT (by length); VBA storage holds dir < _VBA_PROJECT
        entries = [
            _entry("Root Entry", 5, NONE, NONE, 1, END, 0),
            _entry("PROJECT", 2, 2, 3, NONE, stream_of["PROJECT"], STREAM),
            _entry("VBA", 1, NONE, NONE, 5, END, 0),
            _entry("WordDocument", 2, NONE, NONE, NONE, stream_of["WordDocument"], STREAM),
            _entry("dir", 2, NONE, NONE, NONE, stream_of["dir"], STREAM),
            _entry("_VBA_PROJECT", 2, 4, NONE, NONE, stream_of["_VBA_PROJECT"], STREAM),
        ]
    else:
        entries = [
            _entry("Root Entry", 5, NONE, NONE, 1, END, 0),
            _entry("WordDocument", 2, NONE, NONE, NONE, stream_of["WordDocument"], STREAM),
        ]
    empty = _entry("", 0, NONE, NONE, NONE, 0, 0)
    entries += [empty] * (directory_sectors * SECTOR // 128 - len(entries))
    header = struct.pack(
        "<8s16sHHHHH6sIIIIIIIII",
        bytes.fromhex("d0cf11e0a1b11ae1"),
        b"\0" * 16,
        0x3E,
        3,
        0xFFFE,
        9,
        6,
        b"\0" * 6,
        0,  # directory sectors (0 in version 3)
        1,  # FAT sectors
        1,  # first directory sector
        0,
        STREAM,  # mini stream cutoff
        END,  # first mini FAT sector
        0,
        END,  # first DIFAT sector
        0,
    )
    header += struct.pack("<109I", 0, *([FREE] * 108))
    body = struct.pack(f"<{len(fat)}I", *fat) + b"".join(entries)
    body += b"".join(name.encode().ljust(STREAM, b"\0") for name in names)
    return header + body
