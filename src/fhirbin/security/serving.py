"""How native content is served safely: the headers that stop a browser from running it.

R4 binary.html#rest ("Security") and security.html#narrative warn that a Binary may be HTML with
script (or SVG, XML, JavaScript …) and that browser-served content must not run in the API's
origin. Every native read (200 and 206, api/reads.py) therefore carries:

- ``Content-Disposition`` (RFC 6266): ``inline`` only for passive types a browser shows without
  running anything (PDF, raster images other than SVG, audio, video, plain text); everything
  else, and always HTML, SVG, XML and JavaScript, is ``attachment``. The file name is built from
  the id and an extension for the type, never from client input, and is sent both as
  ``filename`` and as RFC 8187 (formerly 5987) ``filename*=UTF-8''…``, percent-encoded.
- ``Content-Security-Policy: sandbox; default-src 'none'`` (no script, no plugins, a unique
  origin, nothing loaded) on everything except PDF. Browsers' PDF viewers do not work in a
  sandboxed document (Chrome and Safari show nothing), and Chrome's viewer is an ``<embed>`` in
  a synthetic page with inline styles (crbug.com/271452), so a PDF gets
  ``default-src 'none'; object-src 'self'; style-src 'unsafe-inline'``: the viewer works, and
  the document itself still loads and runs nothing.
- ``X-Content-Type-Options: nosniff`` (the browser keeps the declared type),
  ``Cross-Origin-Resource-Policy: same-origin`` (other sites cannot embed the bytes as images
  or scripts: Spectre-class leaks) and ``Referrer-Policy: no-referrer`` (links in a document do
  not leak the Binary's URL).

A signed URL (docs/api.md, "Signed URLs") is made to be embedded in other sites' pages, so
its answers may carry ``Cross-Origin-Resource-Policy: cross-origin`` instead
(:func:`resource_policy`, docs/decisions.md#signed-urls); every other header stays.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import quote

from fhirbin.security.mediatypes import canonical

SANDBOX_CSP = "sandbox; default-src 'none'"
SAME_ORIGIN = "same-origin"
CROSS_ORIGIN = "cross-origin"
PDF_CSP = "default-src 'none'; object-src 'self'; style-src 'unsafe-inline'"

#: Shown in the browser: types that display without running anything (audio/* and video/* too).
INLINE_TYPES = frozenset(
    {
        "application/pdf",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/bmp",
        "image/tiff",
        "image/heic",
        "image/vnd.microsoft.icon",
        "text/plain",
    }
)

#: File name extensions. Executables and scripts are deliberately absent: they are saved as
#: ``.bin`` (``.txt`` for text types) so that a double-click never runs them.
EXTENSIONS: dict[str, str] = {
    "application/pdf": "pdf",
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/avif": "avif",
    "image/bmp": "bmp",
    "image/tiff": "tif",
    "image/heic": "heic",
    "image/jp2": "jp2",
    "image/vnd.microsoft.icon": "ico",
    "image/svg+xml": "svg",
    "text/plain": "txt",
    "text/csv": "csv",
    "text/markdown": "md",
    "text/html": "html",
    "application/xhtml+xml": "xhtml",
    "application/xml": "xml",
    "application/json": "json",
    "application/x-ndjson": "ndjson",
    "application/rtf": "rtf",
    "application/zip": "zip",
    "application/gzip": "gz",
    "application/x-tar": "tar",
    "application/x-7z-compressed": "7z",
    "application/msword": "doc",
    "application/vnd.ms-excel": "xls",
    "application/vnd.ms-powerpoint": "ppt",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
    "application/vnd.oasis.opendocument.text": "odt",
    "application/vnd.oasis.opendocument.spreadsheet": "ods",
    "application/epub+zip": "epub",
    "application/dicom": "dcm",
    "application/hl7-v2": "hl7",
    "audio/mpeg": "mp3",
    "audio/wav": "wav",
    "audio/ogg": "ogg",
    "audio/flac": "flac",
    "audio/mp4": "m4a",
    "audio/x-m4a": "m4a",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "video/ogg": "ogv",
    "video/quicktime": "mov",
    "video/mpeg": "mpg",
}

_SUFFIX_EXTENSIONS = (("+json", "json"), ("+xml", "xml"), ("+zip", "zip"), ("+gzip", "gz"))
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9.-]")


def is_inline(media_type: str) -> bool:
    """Whether a browser may show the content in place (the passive allow-list)."""
    name = canonical(media_type)
    return name in INLINE_TYPES or name.startswith(("audio/", "video/"))


def extension(media_type: str) -> str:
    name = canonical(media_type)
    if name in EXTENSIONS:
        return EXTENSIONS[name]
    for suffix, ext in _SUFFIX_EXTENSIONS:
        if name.endswith(suffix):
            return ext
    return "txt" if name.startswith("text/") else "bin"


def filename(binary_id: str, media_type: str) -> str:
    """``binary-<id>.<ext>``: derived from the server's id, never from client input."""
    return _name(binary_id, _per_type(media_type)[1])


def content_disposition(binary_id: str, media_type: str) -> str:
    """RFC 6266 §4.1 with both forms of the name (§4.3 and Appendix D: ``filename`` first as
    the fallback, then ``filename*`` in RFC 8187's ``UTF-8''`` percent-encoding, which wins
    wherever it is understood). The name only holds ``[A-Za-z0-9.-]``, so the quoted form
    needs no escaping and the encoded one is the same text."""
    kind, ext, _ = _per_type(media_type)
    name = _name(binary_id, ext)
    return f"{kind}; filename=\"{name}\"; filename*=UTF-8''{quote(name, safe='')}"


def native_headers(binary_id: str, content_type: str) -> dict[str, str]:
    """Extra response headers for a native read of ``binary_id`` stored as ``content_type``.

    Called for every native 200/206 (and HEAD): everything that depends on the type is
    computed once per type.
    """
    _, _, headers = _per_type(content_type)
    result = dict(headers)
    result["Content-Disposition"] = content_disposition(binary_id, content_type)
    return result


def resource_policy(*, signed: bool, embedding_origins: bool) -> str:
    """``Cross-Origin-Resource-Policy`` of a native answer (Fetch §3.7).

    A CORP header cannot name origins: ``same-origin`` blocks every other origin's ``<img>``,
    ``cross-origin`` allows all of them. Only an answer to a signed URL, on a deployment that
    lists origins allowed to embed (``FHIRBIN_CORS_ORIGINS``), is ``cross-origin``: whoever
    holds that URL can fetch its bytes anyway, so the header gives a page that has it nothing
    it could not get; everything else stays ``same-origin``.
    """
    return CROSS_ORIGIN if signed and embedding_origins else SAME_ORIGIN


def _name(binary_id: str, ext: str) -> str:
    safe_id = _UNSAFE_ID.sub("-", binary_id).lstrip(".") or "content"
    return f"binary-{safe_id}.{ext}"


@functools.lru_cache(maxsize=512)
def _per_type(media_type: str) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """(disposition kind, extension, fixed headers) for a stored content type."""
    csp = PDF_CSP if canonical(media_type) == "application/pdf" else SANDBOX_CSP
    headers = (
        ("Content-Security-Policy", csp),
        ("X-Content-Type-Options", "nosniff"),
        ("Cross-Origin-Resource-Policy", SAME_ORIGIN),
        ("Referrer-Policy", "no-referrer"),
    )
    return ("inline" if is_inline(media_type) else "attachment"), extension(media_type), headers
