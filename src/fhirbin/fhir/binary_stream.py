"""A FHIR JSON create/update body parsed as a stream, its base64 ``data`` decoded in pieces.

:func:`fhirbin.fhir.binary_parse.parse_binary_resource` holds a whole body in memory, and its
JSON parser the ``data`` string again (5-6 times the body in all). Here the body is a file (the
request body spooled to disk by the caller) and the JSON is parsed by ijson, an incremental
parser. ijson hands over each string value whole, though, so on its own it would still hold the
base64 ``data`` in memory (measured: +172 MiB peak for an 85 MiB body). So ijson reads the body
through :class:`_RunsElided`, a byte filter that is not a JSON parser: every run of at least
``RUN`` base64 characters (``A-Z a-z 0-9 + / =`` and the escapes ``\\n \\r \\t \\/``) is
replaced by the escape ``\\u0000`` and remembered as a byte range of the file. ijson parses the
rest, checks that the body is JSON, and sees each elided run as one U+0000 in a string; the
``data`` value is then rebuilt, and decoded, from its literal pieces and the byte ranges.

A run never starts within five bytes after a backslash, so it cannot start inside an escape
sequence. A run outside a string (only a number of ``RUN`` digits or more can make one) leaves
the body unparsable: such a body is treated as not JSON (``json.loads`` refuses integers of
more than 4,300 digits too). A client's own ``\\u0000`` in a Binary is detected (the count of
U+0000 no longer matches the runs) and refused. Whitespace inside ``data`` other than the
``\\n \\r \\t`` escapes (a space) ends a run, so such base64 is held by ijson piece by piece.

The Binary itself is validated by the same rules as the in-memory parser
(:func:`fhirbin.fhir.binary_parse.check_binary_document`).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Final

# ijson ships no type hints.
import ijson  # type: ignore[import-untyped,unused-ignore]

from fhirbin.errors import BadRequest
from fhirbin.fhir.binary_parse import (
    BINARY_ELEMENTS,
    check_binary_document,
    duplicate_property,
    not_json,
)

__all__ = [
    "CHUNK",
    "RUN",
    "StreamedBinary",
    "StreamedData",
    "data_chunks",
    "parse_binary_json_file",
]

#: The shortest run of base64 characters kept out of ijson's memory.
RUN: Final = 4096
BLOCK: Final = 64 * 1024
#: Decoded chunks handed to the storage pipeline are about this size.
CHUNK: Final = 64 * 1024
# A run: base64 characters and the escapes \n \r \t \/ (possessive: no backtracking, so the
# scan runs at the speed of a character class), never starting within five bytes after a
# backslash, so never inside an escape sequence.
_RUN_RE = re.compile(
    rb"(?<!\\)(?<!\\.)(?<!\\..)(?<!\\...)(?<!\\....)(?:[A-Za-z0-9+/=]++|\\[nrt/])++",
    re.DOTALL,
)
_CONTINUED_RE = re.compile(rb"(?:[A-Za-z0-9+/=]++|\\[nrt/])*+")
_MARKER: Final = rb"\u0000"
_WHITESPACE = b" \t\r\n"
_BAD_BASE64 = "Binary.data is not valid base64 (RFC 4648 §4: A-Z a-z 0-9 + / with = padding)."


class _RunsElided:
    """The file as ijson reads it: long base64 runs replaced by ``\\u0000``, their byte
    ranges in :attr:`runs` in document order."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._out = bytearray()
        self._offset = 0  # file offset of the next block
        self._tail = b""  # the last bytes of the previous block, for the look-behind
        self._pending: int | None = None  # start of a run the previous block ended in
        self._held: bytearray | None = None  # its bytes while shorter than RUN, else None
        self._eof = False
        self.runs: list[tuple[int, int]] = []

    def read(self, size: int = -1) -> bytes:
        while (size < 0 or len(self._out) < size) and not self._eof:
            self._fill()
        if size < 0:
            size = len(self._out)
        piece = bytes(self._out[:size])
        del self._out[:size]
        return piece

    def _fill(self) -> None:
        block = self._file.read(BLOCK)
        start = self._offset
        if not block:
            self._eof = True
            self._close_run(start)
            return
        pos = 0
        if self._pending is not None:
            pos = _CONTINUED_RE.match(block).end()  # type: ignore[union-attr]
            self._hold(block[:pos])
            if pos == len(block):
                self._offset += len(block)
                self._tail = block[-5:]
                return
            self._close_run(start + pos)
        buf = self._tail + block
        base = len(self._tail)
        cursor = base + pos
        for match in _RUN_RE.finditer(buf, cursor):
            if match.end() == len(buf):  # may go on in the next block
                self._out += buf[cursor : match.start()]
                self._pending = start + match.start() - base
                self._held = bytearray()
                self._hold(buf[match.start() :])
                cursor = len(buf)
                break
            if match.end() - match.start() < RUN:
                continue  # short: stays in the text ijson reads
            self._out += buf[cursor : match.start()]
            self.runs.append((start + match.start() - base, start + match.end() - base))
            self._out += _MARKER
            cursor = match.end()
        self._out += buf[cursor:]
        self._tail = block[-5:]
        self._offset += len(block)

    def _hold(self, data: bytes) -> None:
        if self._held is not None:
            self._held += data
            if len(self._held) >= RUN:
                self._held = None  # long: it will be elided

    def _close_run(self, end: int) -> None:
        if self._pending is None:
            return
        if self._held is not None:  # it stayed short: the text itself (it may not be in a string)
            self._out += self._held
        else:
            self.runs.append((self._pending, end))
            self._out += _MARKER
        self._pending = None
        self._held = None


@dataclass(frozen=True)
class StreamedData:
    """``Binary.data``: literal pieces (from ijson) around byte ranges of the file."""

    pieces: tuple[str, ...]
    runs: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class StreamedBinary:
    """A Binary resource read from a spooled body; ``data_runs``/``data_pieces`` locate its
    base64 in the file, ``size`` is the decoded size (the content is checked already)."""

    content_type: str
    security_context: str | None
    id: str | None
    size: int
    data: StreamedData | None


def parse_binary_json_file(file: BinaryIO, *, must_be_json: bool) -> StreamedBinary | None:
    """The Binary the JSON body in ``file`` holds (read from its start), or None if the body
    is not a Binary (any other JSON; and not JSON at all, unless ``must_be_json``: then
    BadRequest). A Binary is validated strictly and its ``data`` decoded once to check it; the
    file is left anywhere."""
    file.seek(0)
    reader = _RunsElided(file)
    try:
        doc, nuls, data, duplicate = _document(reader)
    except (ijson.JSONError, ValueError) as exc:
        if must_be_json and file.seek(0, 2) > 0:
            raise not_json(exc) from None
        return None
    if not isinstance(doc, dict) or doc.get("resourceType") != "Binary":
        return None
    if duplicate is not None:  # json.html: properties appear once
        raise BadRequest(duplicate_property(duplicate), expression="Binary")
    if nuls != len(reader.runs):
        raise BadRequest(
            "A string in this Binary contains U+0000 (or is longer than this server reads "
            "outside Binary.data).",
            expression="Binary",
        )
    content_type, security_context, body_id = check_binary_document(doc)
    size = 0
    if data is not None:
        for chunk in data_chunks(file, data):
            size += len(chunk)
    return StreamedBinary(content_type, security_context, body_id, size, data)


def _document(reader: _RunsElided) -> tuple[Any, int, StreamedData | None, str | None]:
    """The document (of an object, the top-level values a Binary may have; the others are
    only checked for syntax), the count of U+0000 in its strings, ``data`` if it is a string,
    and the first property that appears twice in an object."""
    builder: Any = None  # ijson.ObjectBuilder for the top-level value being read
    keys: list[set[str]] = []
    depth = 0
    key = ""
    nuls = 0
    doc: Any = None
    data: StreamedData | None = None
    duplicate: str | None = None
    for event, value in ijson.basic_parse(reader, use_float=True):
        if event in ("string", "map_key"):
            count = value.count("\0")
            if event == "string" and depth == 1 and key == "data" and isinstance(doc, dict):
                data = StreamedData(
                    tuple(value.split("\0")), tuple(reader.runs[nuls : nuls + count])
                )
                nuls += count
                doc[key] = "-" if value else ""  # checked as a non-empty string
                continue
            nuls += count
        if event == "map_key":
            if value in keys[-1] and duplicate is None:
                duplicate = value
            keys[-1].add(value)
            if depth == 1:
                key = value
                doc[key] = ...  # present; the value is read below if a Binary may have it
                continue
        elif event in ("start_map", "start_array"):
            if event == "start_map":
                keys.append(set())
            depth += 1
            if depth == 1:
                doc = {} if event == "start_map" else []
                continue
        elif event in ("end_map", "end_array"):
            if event == "end_map":
                keys.pop()
            depth -= 1
            if depth == 0:
                continue
        elif depth == 0:
            doc = value
            continue
        if not isinstance(doc, dict):
            continue
        if builder is None and key in BINARY_ELEMENTS:
            builder = ijson.ObjectBuilder()
        if builder is not None:
            builder.event(event, value)
            if depth == 1:
                doc[key] = builder.value
                builder = None
    return doc, nuls, data, duplicate


def data_chunks(file: BinaryIO, data: StreamedData) -> Iterator[bytes]:
    """The decoded content of ``data``, in chunks of about CHUNK bytes; BadRequest if it is
    not valid base64 (whitespace is allowed, R4 datatypes.html#base64Binary)."""
    decoder = _Base64()
    for index, piece in enumerate(data.pieces):
        try:
            text = piece.encode("ascii")
        except UnicodeEncodeError:
            raise BadRequest(_BAD_BASE64, expression="Binary.data") from None
        yield from decoder.feed(text)
        if index < len(data.runs):
            start, end = data.runs[index]
            file.seek(start)
            left = end - start
            while left > 0:
                raw = file.read(min(BLOCK, left))
                if not raw:
                    raise BadRequest(_BAD_BASE64, expression="Binary.data")
                left -= len(raw)
                if raw.endswith(b"\\") and left > 0:  # never split an escape pair
                    raw += file.read(1)
                    left -= 1
                yield from decoder.feed(_unescape(raw))
    yield from decoder.close()


def _unescape(raw: bytes) -> bytes:
    if b"\\" not in raw:
        return raw
    return raw.replace(b"\\/", b"/").replace(b"\\n", b"").replace(b"\\r", b"").replace(b"\\t", b"")


class _Base64:
    """Incremental strict base64 decoding: whole 4-character groups at a time; padding only
    at the very end."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._padded = False

    def feed(self, text: bytes) -> Iterator[bytes]:
        self._buffer += text.translate(None, _WHITESPACE)
        if len(self._buffer) >= CHUNK * 4 // 3:
            yield from self._decode(len(self._buffer) - len(self._buffer) % 4)

    def close(self) -> Iterator[bytes]:
        if len(self._buffer) % 4:
            raise BadRequest(_BAD_BASE64, expression="Binary.data")
        yield from self._decode(len(self._buffer))

    def _decode(self, cut: int) -> Iterator[bytes]:
        if not cut:
            return
        if self._padded:
            raise BadRequest(_BAD_BASE64, expression="Binary.data")
        group = bytes(self._buffer[:cut])
        del self._buffer[:cut]
        try:
            decoded = binascii.a2b_base64(group, strict_mode=True)
        except binascii.Error:
            raise BadRequest(_BAD_BASE64, expression="Binary.data") from None
        self._padded = group.endswith(b"=")
        if decoded:
            yield decoded
