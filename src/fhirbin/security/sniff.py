"""What the content really is: libmagic's verdict on the first bytes of an upload.

R4 binary.html#rest ("Security") asks servers to take extra care validating Binary content,
whose type is only what the client says. libmagic (through python-magic) is the one sniffer
that recognises HTML, SVG, XML and JSON as well as binary formats. It is given the first
:data:`SNIFF_BYTES` of the content, which is all it needs for the formats that matter here, so
memory stays flat however large the upload is.

libmagic also *guesses*: DOS ``.com`` programs have no header, so it calls roughly 1 % of random
binary data ``application/x-dosexec``, and it reports a.out objects, raw MPEG audio frames and
the like from two or three bytes. A guess at an executable is confirmed against the real magic
number of that format before it counts (a refusal on a coin toss would reject one encrypted
blob in a hundred); unconfirmed guesses become ``application/octet-stream`` ("not identified").
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import magic

#: The shared library python-magic loads on Linux, and the Debian package that installs it.
LIBMAGIC = "libmagic.so.1"
LIBMAGIC_PACKAGE = "libmagic1"


class MissingLibraryError(RuntimeError):
    """A system library fhirbin needs cannot be loaded; the message says how to install it."""


def check_libmagic(library: str | None = None) -> None:
    """Raise MissingLibraryError, naming the library and its package, unless ``library``
    (default :data:`LIBMAGIC`) loads. Called at start (``fhirbin serve``, and before the first
    sniff in each worker), so a machine without it fails with this message instead of workers
    dying on an import."""
    library = library or LIBMAGIC
    try:
        ctypes.CDLL(library)
    except OSError as exc:
        raise MissingLibraryError(
            f"{library} (libmagic, Debian package {LIBMAGIC_PACKAGE}) cannot be loaded: {exc}. "
            "fhirbin identifies the content of every upload with it. Install it "
            f"(`apt-get install {LIBMAGIC_PACKAGE}`; `make serve` does this) and start again."
        ) from None


#: libmagic looks at no more than this many leading bytes (ZIP-based Office documents, whose
#: distinguishing entries come first, and ISO images at 32 KiB are within it).
SNIFF_BYTES = 64 * 1024

UNIDENTIFIED = "application/octet-stream"

_MZ = (b"MZ", b"ZM")
_ELF = (b"\x7fELF",)
_MACH_O = (
    b"\xfe\xed\xfa\xce",
    b"\xfe\xed\xfa\xcf",
    b"\xce\xfa\xed\xfe",
    b"\xcf\xfa\xed\xfe",
    b"\xca\xfe\xba\xbe",  # universal ("fat") binary, same magic as a Java class file
)

#: Types libmagic may report on weak evidence, and the leading bytes that confirm them.
_CONFIRM: dict[str, tuple[bytes, ...]] = {
    "application/x-dosexec": _MZ,
    "application/vnd.microsoft.portable-executable": _MZ,
    "application/x-msdownload": _MZ,
    "application/x-executable": _ELF,
    "application/x-sharedlib": _ELF,
    "application/x-pie-executable": _ELF,
    "application/x-object": _ELF,
    "application/x-coredump": _ELF,
    "application/x-mach-binary": _MACH_O,
    "application/x-java-applet": (b"\xca\xfe\xba\xbe",),
    "audio/mpeg": (b"ID3",),  # bare MPEG frames are recognised from a 2-byte sync word
}


@dataclass(frozen=True)
class Sniffed:
    """libmagic's answer: a lowercase media type essence and the charset it detected.

    ``charset`` is ``binary`` for non-text content and e.g. ``us-ascii``, ``utf-8``,
    ``iso-8859-1`` or ``unknown-8bit`` for text.
    """

    media_type: str
    charset: str = "binary"

    @property
    def identified(self) -> bool:
        return self.media_type not in (UNIDENTIFIED, "application/x-empty")

    def __str__(self) -> str:
        return self.media_type


@dataclass
class SniffRecord:
    """Where the screener notes what it sniffed for one upload, so that the inspection after
    staging judges the content by what it is, without sniffing it again."""

    found: Sniffed | None = None


@functools.cache
def _libmagic() -> magic.Magic:
    # One handle per process; python-magic serialises calls on it with a lock, so it may be
    # used from worker threads. Imported here: python-magic loads libmagic on import.
    check_libmagic()
    import magic

    return magic.Magic(mime=True, mime_encoding=True)


def sniff(head: bytes) -> Sniffed:
    """Identify content from its first bytes (at most :data:`SNIFF_BYTES` are looked at)."""
    head = head[:SNIFF_BYTES]
    answer = str(_libmagic().from_buffer(head))
    media_type, _, params = answer.partition(";")
    media_type = media_type.strip().lower()
    charset = "binary"
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().lower()
    confirm = _CONFIRM.get(media_type)
    if confirm is not None and not head.startswith(confirm):
        return Sniffed(UNIDENTIFIED, charset)
    return Sniffed(media_type or UNIDENTIFIED, charset)
