"""When the sniffed type counts as "the same" as the declared one: the compatibility table.

R4 binary.html#rest ("Security") asks for extra care with Binary content because its type is
only what the client says. fhirbin compares the declared type with what libmagic finds in the
first bytes (security/sniff.py) and refuses a contradiction. The table is strict where a wrong
label could make a browser or a viewer treat content as something else (an executable labelled
PDF, a PDF labelled PNG, HTML or SVG labelled as an image or as plain text) and tolerant where
libmagic is coarse (it calls CSV, JSON, HL7 v2 and FHIR JSON ``text/plain`` or
``application/json``, XML without a declaration ``text/plain`` or even ``text/html``, and every
Office Open XML file it cannot place ``application/zip``).

======================================  =================================================
content (sniffed)                       accepted declared types
======================================  =================================================
not identified: octet-stream, empty,    anything (nothing contradicts the label)
8-bit text, a type not in this table
text: text/* in ASCII/UTF-8/UTF-16,     text/*, JSON/XML/YAML/NDJSON/HL7 v2/EDI/CSV
application/json, application/x-ndjson  application types, any ``+json``/``+xml``/
                                        ``+yaml``, message/*, application/vnd.ms-excel
markup: text/html, text/xml,            text/html, XHTML, XML (``application/xml``,
image/svg+xml, application/xhtml+xml    ``text/xml``, any ``+xml``), text/xsl
application/pdf                         application/pdf
raster images (png, jpeg, gif, webp,    the same image type (``image/jpg`` = ``image/jpeg``,
bmp, tiff, heic, avif, jp2)             ``image/x-ms-bmp`` = ``image/bmp`` …)
ZIP and ZIP-based (docx, xlsx, odt,     ZIP, any ``+zip``, Office Open XML, OpenDocument,
epub, jar, apk) and OLE2 (doc, xls,     the OLE2 Office types, JAR, APK, XPS
ppt, msg, msi)
gzip                                    gzip, any ``+gzip``
audio and video containers              any audio/* or video/*, application/ogg,
                                        application/mp4
text/rtf                                the text types, application/rtf, application/msword
executables, DICOM, 7z, RAR, bzip2, xz, the same type
zstd, tar, fonts, SQLite, PostScript
======================================  =================================================

A declared ``application/octet-stream`` is never a contradiction (the client says it does not
know), and media type parameters (``charset``) are not compared.
"""

from __future__ import annotations

from fhirbin.fhir.negotiate import media_type_essence
from fhirbin.security.sniff import Sniffed

GENERIC = "application/octet-stream"

_PE = "application/vnd.microsoft.portable-executable"
_ELF = "application/x-executable"
_MACH_O = "application/x-mach-binary"

#: Names for the same format, mapped to one (IANA's where there is one).
ALIASES: dict[str, str] = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "image/x-ms-bmp": "image/bmp",
    "image/x-bmp": "image/bmp",
    "image/x-tiff": "image/tiff",
    "image/heif": "image/heic",
    "image/heic-sequence": "image/heic",
    "image/heif-sequence": "image/heic",
    "image/jpx": "image/jp2",
    "application/x-pdf": "application/pdf",
    "application/acrobat": "application/pdf",
    "application/x-zip-compressed": "application/zip",
    "application/x-zip": "application/zip",
    "application/x-gzip": "application/gzip",
    "text/xml": "application/xml",
    "application/x-xml": "application/xml",
    "application/x-rar": "application/vnd.rar",
    "application/x-rar-compressed": "application/vnd.rar",
    "application/x-bzip": "application/x-bzip2",
    "application/x-dicom": "application/dicom",
    "application/x-sqlite3": "application/vnd.sqlite3",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/x-flac": "audio/flac",
    "audio/mp3": "audio/mpeg",
    "text/rtf": "application/rtf",
    "application/x-rtf": "application/rtf",
    "text/x-sh": "text/x-shellscript",
    "application/x-sh": "text/x-shellscript",
    "application/x-shellscript": "text/x-shellscript",
    "application/javascript": "text/javascript",
    "application/x-javascript": "text/javascript",
    "application/ecmascript": "text/javascript",
    "text/ecmascript": "text/javascript",
    "application/x-dosexec": _PE,
    "application/x-msdownload": _PE,
    "application/x-ms-dos-executable": _PE,
    "application/x-msdos-program": _PE,
    "application/x-sharedlib": _ELF,
    "application/x-pie-executable": _ELF,
    "application/x-object": _ELF,
    "application/x-elf": _ELF,
    "application/x-mach-o-executable": _MACH_O,
}


def canonical(media_type: str) -> str:
    """The lowercase essence (parameters dropped), with aliases resolved."""
    name = media_type_essence(media_type)
    return ALIASES.get(name, name)


_TEXT_CHARSETS = frozenset({"us-ascii", "utf-8", "utf-16le", "utf-16be", "utf-32le", "utf-32be"})

_TEXTUAL = frozenset(
    {
        "application/json",
        "application/xml",
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonlines",
        "application/yaml",
        "application/x-yaml",
        "application/csv",
        "application/sql",
        "application/rtf",
        "application/hl7-v2",
        "application/x-hl7",
        "x-application/hl7-v2+er7",
        "application/edi-x12",
        "application/edifact",
        "application/edi-consent",
        "application/x-www-form-urlencoded",
        "application/x-tex",
        "application/x-latex",
        "application/mbox",
        "application/pgp-signature",
        "application/pkix-cert",  # PEM
        "application/x-pem-file",
        "text/javascript",
        "text/x-shellscript",
        # Windows browsers label .csv files application/vnd.ms-excel
        "application/vnd.ms-excel",
    }
)

_MARKUP = frozenset({"text/html", "application/xhtml+xml", "application/xml", "text/xsl"})

_RASTER = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/bmp",
        "image/tiff",
        "image/heic",
        "image/avif",
        "image/jp2",
    }
)

_OLE = frozenset(
    {
        "application/x-ole-storage",
        "application/cdfv2",
        "application/msword",
        "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint",
        "application/vnd.ms-outlook",
        "application/vnd.ms-office",
        "application/vnd.visio",
        "application/vnd.ms-project",
        "application/x-msi",
    }
)

_ZIP = frozenset(
    {
        "application/zip",
        "application/java-archive",
        "application/x-java-archive",
        "application/vnd.android.package-archive",
        "application/vnd.ms-xpsdocument",
        "application/oxps",
        "application/vnd.ms-visio.drawing",
        "application/vnd.google-earth.kmz",
    }
)
_ZIP_PREFIXES = (
    "application/vnd.openxmlformats-officedocument.",
    "application/vnd.oasis.opendocument.",
    "application/vnd.ms-word.",
    "application/vnd.ms-excel.",
    "application/vnd.ms-powerpoint.",
)

_AV = frozenset(
    {
        "audio/wav",
        "audio/x-aiff",
        "audio/aiff",
        "audio/ogg",
        "video/ogg",
        "application/ogg",
        "audio/flac",
        "audio/mpeg",
        "audio/x-m4a",
        "audio/mp4",
        "video/mp4",
        "video/quicktime",
        "video/webm",
        "audio/webm",
        "video/x-matroska",
        "audio/x-matroska",
        "video/x-msvideo",
        "video/3gpp",
        "video/3gpp2",
        "audio/3gpp",
        "audio/midi",
        "video/x-ms-asf",
        "video/mpeg",
    }
)

#: Recognised by a real signature, and compared exactly.
_EXACT = frozenset(
    {
        _PE,
        _ELF,
        _MACH_O,
        "application/x-java-applet",
        "application/wasm",
        "application/x-ms-shortcut",
        "application/x-shockwave-flash",
        "application/dicom",
        "application/x-7z-compressed",
        "application/vnd.rar",
        "application/x-bzip2",
        "application/x-xz",
        "application/zstd",
        "application/x-tar",
        "application/x-iso9660-image",
        "application/vnd.sqlite3",
        "application/postscript",
        "font/woff",
        "font/woff2",
        "font/sfnt",
        "font/ttf",
        "font/otf",
    }
)


def is_textual(declared: str) -> bool:
    """A declared type whose content is text (what libmagic's ``text/plain`` can be)."""
    return (
        declared.startswith(("text/", "message/"))
        or declared in _TEXTUAL
        or declared.endswith(("+json", "+xml", "+yaml", "+json-seq"))
    )


def is_markup(declared: str) -> bool:
    """A declared type a browser parses as HTML or XML (and so may run script from)."""
    return declared in _MARKUP or declared.endswith("+xml")


def _is_container(media_type: str) -> bool:
    return (
        media_type in _ZIP
        or media_type in _OLE
        or media_type.endswith("+zip")
        or media_type.startswith(_ZIP_PREFIXES)
    )


def _is_av(media_type: str) -> bool:
    return media_type.startswith(("audio/", "video/")) or media_type in (
        "application/ogg",
        "application/mp4",
    )


def accepts(declared_type: str, found: Sniffed) -> bool:
    """Whether content sniffed as ``found`` may be stored under ``declared_type``."""
    declared = canonical(declared_type)
    sniffed = canonical(found.media_type)
    if declared in (GENERIC, sniffed) or not found.identified:
        return True
    if sniffed in _MARKUP or sniffed == "image/svg+xml":
        return is_markup(declared)  # active markup never hides behind a passive type
    if sniffed == "application/rtf":
        return is_textual(declared) or declared == "application/msword"
    if sniffed.startswith("text/") or sniffed in ("application/json", "application/x-ndjson"):
        # libmagic's text types are coarse guesses (text/x-c for C-looking prose), but text it
        # is only when the charset says so: high-bit binary passes as ISO-8859 "text".
        return found.charset not in _TEXT_CHARSETS or is_textual(declared)
    if sniffed == "application/pdf" or sniffed in _RASTER or sniffed in _EXACT:
        return False  # declared == sniffed was checked above
    if _is_container(sniffed):
        return _is_container(declared)
    if sniffed == "application/gzip":
        return declared.endswith("+gzip")
    if sniffed in _AV:
        return _is_av(declared)
    # libmagic named a format this table does not judge; many are guessed from two or three
    # bytes (zlib streams, ADTS audio, Amiga fonts), so the label is not contradicted.
    return True
