"""ZIP and ZIP-based formats (OOXML, ODF, JAR, EPUB): bombs, escaping paths, deep nesting, and
the macro parts of Office documents, judged from the central directory.

Nothing is extracted to disk. The central directory gives every entry's name and declared
sizes; the declared total (nested archives included) must stay under ``zip_max_expanded``.
Declared sizes can lie, so an entry that claims to expand more than ``zip_max_ratio`` times is
decompressed as a stream, chunk by chunk and thrown away, stopping as soon as it passes its
declared size or the total budget. Entries whose compressed data overlap (the "non-recursive"
bomb that points thousands of entries at one compressed block) are refused outright. A nested
archive is opened in place (``zipfile`` seeks inside the compressed entry) and counts against
the same budget, one level deeper.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO

from fhirbin.inspection.rules import Finding, Limits, Refused

_CHUNK = 256 * 1024
_LOCAL_HEADER = 30
_ENCRYPTED = 0x1
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def is_zip(head: bytes) -> bool:
    return head.startswith(_ZIP_MAGIC)


def check_zip(path: Path, limits: Limits) -> Finding | None:
    """The first finding in the ZIP at ``path``; None also when it is not a readable ZIP (the
    type screening already judged what it is)."""
    budget = [limits.zip_max_expanded]
    try:
        with path.open("rb") as file:
            _archive(file, limits, 1, budget)
    except Refused as refused:
        return refused.finding
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError):
        return None  # not a ZIP an unpacker could read either
    except zlib.error:
        return None  # corrupt compressed data: nothing can be unpacked from it
    return None


def _refuse(limits: Limits, finding: Finding) -> None:
    if finding.rule not in limits.allowed:
        raise Refused(finding)


def _archive(file: IO[bytes], limits: Limits, depth: int, budget: list[int]) -> None:
    if depth > limits.zip_max_depth:
        _refuse(
            limits,
            Finding(
                "zip-nesting",
                f"The archive nests archives {depth} deep (the limit is {limits.zip_max_depth}).",
            ),
        )
        return
    with zipfile.ZipFile(file) as archive:
        entries = archive.infolist()
        for info in entries:
            _check_name(info.filename, limits)
            budget[0] -= info.file_size
            if budget[0] < 0:
                _refuse(limits, _bomb(f"expands to more than {limits.zip_max_expanded} bytes"))
                return
        _check_overlap(entries, limits)
        for info in entries:
            ratio = info.file_size / max(info.compress_size, 1)
            lies = info.file_size + 1024 < info.compress_size  # deflate never shrinks so far
            if depth == 1 and (ratio > limits.zip_max_ratio or lies):
                _verify_size(file, info, limits)
            if info.flag_bits & _ENCRYPTED:
                continue  # its content cannot be seen (docs/security.md: not yet covered)
            with archive.open(info) as member:
                if is_zip(member.read(4)):
                    member.seek(0)
                    _archive(member, limits, depth + 1, budget)


def _check_name(name: str, limits: Limits) -> None:
    lowered = name.replace("\\", "/").lower()
    parts = PurePosixPath(lowered).parts
    if lowered.startswith("/") or (len(lowered) > 1 and lowered[1] == ":") or ".." in parts:
        _refuse(
            limits, Finding("zip-path", "The archive has an entry with an absolute or '..' path.")
        )
    if parts and parts[-1] == "vbaproject.bin":
        _refuse(limits, Finding("office-macros", "The Office document contains VBA macros."))
    odf_macro = len(parts) > 1 and parts[0] in ("basic", "scripts")
    if odf_macro and parts[-1] not in ("script-lc.xml", "dialog-lc.xml"):
        _refuse(limits, Finding("office-macros", "The OpenDocument file contains macros."))


def _check_overlap(entries: list[zipfile.ZipInfo], limits: Limits) -> None:
    end = -1
    for info in sorted(entries, key=lambda i: i.header_offset):
        if info.header_offset < end:
            _refuse(limits, _bomb("has entries whose compressed data overlap"))
            return
        end = info.header_offset + _LOCAL_HEADER + info.compress_size


def _verify_size(file: IO[bytes], info: zipfile.ZipInfo, limits: Limits) -> None:
    """Inflate a deflated entry's raw data, bounded, to see whether it lies about its size."""
    if info.compress_type != zipfile.ZIP_DEFLATED:
        return
    file.seek(info.header_offset)
    header = file.read(_LOCAL_HEADER)
    if len(header) < _LOCAL_HEADER:
        return
    skip = int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")
    file.seek(skip, 1)
    inflater = zlib.decompressobj(-15)
    left, produced = info.compress_size, 0
    allowed = info.file_size  # already counted against the budget
    while left > 0 and not inflater.eof:
        data = file.read(min(_CHUNK, left))
        if not data:
            break
        left -= len(data)
        while data:
            out = inflater.decompress(data, _CHUNK)
            produced += len(out)
            if produced > allowed:
                _refuse(limits, _bomb("has an entry that expands to more than it declares"))
                return
            data = inflater.unconsumed_tail


def _bomb(what: str) -> Finding:
    return Finding("zip-bomb", f"The archive {what} (a decompression bomb).")
