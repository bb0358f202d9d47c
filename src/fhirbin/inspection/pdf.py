"""PDF: active content a viewer would run or open, found with qpdf's repairing parser.

pikepdf (qpdf) is chosen over pypdf for its repair of damaged files and its speed: it reads the
cross-reference table and the object dictionaries without decoding page streams, from the file
itself (memory follows the number of objects, not the size of the file). Every object of the
file is visited, those inside object streams included, and the dictionaries inside them; qpdf
has already decoded ``#xx`` escapes in names (``/J#61vaScript`` is ``/JavaScript``).

Where even qpdf cannot read the file (or it is encrypted), the same markers are searched for in
the bytes, names unescaped the same way, so that a broken but harmless PDF (the two-line
``%PDF-1.4 ... %%EOF``) is still accepted and a broken hostile one is still refused. That
fallback cannot see into compressed object streams (docs/security.md says so).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TypeGuard

import pikepdf

from fhirbin.inspection.rules import Finding

#: Name (without its slash) → the finding it raises, when it is a dictionary key.
_KEYS: dict[str, Finding] = {
    "JS": Finding("pdf-javascript", "The PDF contains JavaScript (/JS)."),
    "JavaScript": Finding("pdf-javascript", "The PDF contains JavaScript (/JavaScript)."),
    "EmbeddedFiles": Finding("pdf-embedded-files", "The PDF embeds files (/EmbeddedFiles)."),
    "EF": Finding("pdf-embedded-files", "The PDF embeds files (/EF file specification)."),
    "XFA": Finding("pdf-xfa", "The PDF contains an XFA form (/XFA)."),
    "RichMediaContent": Finding("pdf-richmedia", "The PDF contains rich media (/RichMedia)."),
}
#: Name → the finding it raises as a value (/S /JavaScript, /Type /EmbeddedFile, ...).
_VALUES: dict[str, Finding] = {
    "JavaScript": _KEYS["JavaScript"],
    "Launch": Finding(
        "pdf-launch", "The PDF contains an action that launches a program (/Launch)."
    ),
    "EmbeddedFile": Finding("pdf-embedded-files", "The PDF embeds a file (/EmbeddedFile)."),
    "RichMedia": _KEYS["RichMediaContent"],
}

_CHUNK = 1024 * 1024
_OVERLAP = 256
_NAME = re.compile(rb"/((?:[A-Za-z0-9]|#[0-9A-Fa-f]{2})+)")
_HEX = re.compile(rb"#([0-9A-Fa-f]{2})")


def check_pdf(path: Path, allowed: frozenset[str] = frozenset()) -> Finding | None:
    """The first active content in the PDF at ``path`` whose rule is not ``allowed``."""
    try:
        with pikepdf.open(path) as pdf:
            for finding in _parsed(pdf):
                if finding.rule not in allowed:
                    return finding
            return None
    except (pikepdf.PdfError, pikepdf.PasswordError, ValueError, RecursionError):
        return check_pdf_bytes(path, allowed)


def _parsed(pdf: pikepdf.Pdf) -> Iterator[Finding]:
    for obj in pdf.objects:
        yield from _walk(obj, 0)


def _walk(obj: pikepdf.Object, depth: int) -> Iterator[Finding]:
    """Findings in one object and the direct objects inside it (indirect ones are visited as
    objects of their own)."""
    if depth > 32:
        return
    if isinstance(obj, pikepdf.Stream):
        obj = obj.stream_dict
    if isinstance(obj, pikepdf.Dictionary):
        for key in obj.keys():  # noqa: SIM118 - pikepdf dictionaries iterate keys this way
            name = key[1:]
            if name in _KEYS:
                yield _KEYS[name]
            value = obj.get(key)
            if isinstance(value, pikepdf.Name) and str(value)[1:] in _VALUES:
                yield _VALUES[str(value)[1:]]
            elif _direct_container(value):
                yield from _walk(value, depth + 1)
    elif isinstance(obj, pikepdf.Array):
        for item in obj:
            if _direct_container(item):
                yield from _walk(item, depth + 1)


def _direct_container(value: object) -> TypeGuard[pikepdf.Object]:
    """A direct dictionary or array (pikepdf gives numbers and strings as Python values)."""
    return isinstance(value, pikepdf.Dictionary | pikepdf.Array) and not value.is_indirect


def check_pdf_bytes(path: Path, allowed: frozenset[str] = frozenset()) -> Finding | None:
    """The byte-level fallback: the same names, ``#xx`` escapes decoded, in the raw bytes."""
    with path.open("rb") as file:
        tail = b""
        while chunk := file.read(_CHUNK):
            window = tail + chunk
            for match in _NAME.finditer(window):
                name = _HEX.sub(lambda m: bytes([int(m.group(1), 16)]), match.group(1))
                text = name.decode("latin-1")
                finding = _KEYS.get(text) or _VALUES.get(text)
                if finding is not None and finding.rule not in allowed:
                    return finding
            tail = window[-_OVERLAP:]
    return None
