"""Hostile documents and their honest twins, built from the formats' rules (nothing shipped).

Each entry is (name, hostile bytes, honest twin, declared type, rule the hostile one breaks).
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

from tests.inspection.ole import compound_file
from tests.security import samples


def pdf(catalog_extra: bytes = b"", *objects: bytes) -> bytes:
    """A small well-formed PDF with a correct xref table."""
    bodies = [
        b"<< /Type /Catalog /Pages 2 0 R " + catalog_extra + b">>",
        b"<< /Type /Pages /Kids [] /Count 0 >>",
        *objects,
    ]
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(bodies, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(bodies) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(bodies) + 1,
        xref,
    )
    return bytes(out)


def zip_bytes(*entries: tuple[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return out.getvalue()


def lying_zip() -> bytes:
    """A ZIP whose one entry declares 100 bytes and inflates to 3 MiB."""
    data = bytearray(zip_bytes(("big.bin", b"\0" * (3 * 1024 * 1024))))
    real = struct.pack("<I", 3 * 1024 * 1024)
    return bytes(data.replace(real, struct.pack("<I", 100)))


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


DOCX_PARTS = (
    ("[Content_Types].xml", b"<Types/>"),
    ("_rels/.rels", b"<Relationships/>"),
    ("word/document.xml", b"<w:document/>"),
)
PLAIN_PDF = pdf()
HTML_OK = (
    b"<!DOCTYPE html><html><head><title>x</title><style>p{color:red}</style></head><body>"
    b'<form action="/submit"><input name="a"></form><img src="data:image/png;base64,iVBORw0K">'
    b'<a href="https://example.org/">link</a></body></html>'
)
SVG_OK = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b'<rect width="5" height="5"/></svg>'
)
CDA_OK = samples.CDA

#: (name, hostile, honest twin, declared type, rule)
CORPUS: list[tuple[str, bytes, bytes, str, str]] = [
    (
        "pdf-openaction-js",
        pdf(b"/OpenAction 3 0 R ", b"<< /S /JavaScript /JS (app.alert(1)) >>"),
        PLAIN_PDF,
        "application/pdf",
        "pdf-javascript",
    ),
    (
        "pdf-hex-escaped-js",
        pdf(b"/OpenAction << /S /J#61vaScript /J#53 (x) >> "),
        PLAIN_PDF,
        "application/pdf",
        "pdf-javascript",
    ),
    (
        "pdf-aa-js",
        pdf(b"/AA << /O << /S /JavaScript /JS (x) >> >> "),
        PLAIN_PDF,
        "application/pdf",
        "pdf-javascript",
    ),
    (
        "pdf-launch",
        pdf(b"/OpenAction << /S /Launch /F (cmd.exe) >> "),
        PLAIN_PDF,
        "application/pdf",
        "pdf-launch",
    ),
    (
        "pdf-embedded",
        pdf(
            b"/Names << /EmbeddedFiles << /Names [(a) 3 0 R] >> >> ",
            b"<< /Type /Filespec /F (a.exe) >>",
        ),
        PLAIN_PDF,
        "application/pdf",
        "pdf-embedded-files",
    ),
    (
        "pdf-xfa",
        pdf(b"/AcroForm << /Fields [] /XFA 3 0 R >> ", b"<< >>"),
        PLAIN_PDF,
        "application/pdf",
        "pdf-xfa",
    ),
    (
        "pdf-richmedia",
        pdf(b"", b"<< /Type /Annot /Subtype /RichMedia /RichMediaContent << >> >>"),
        PLAIN_PDF,
        "application/pdf",
        "pdf-richmedia",
    ),
    (
        "pdf-broken-js",
        b"%PDF-1.4\n<< /S /JavaScript /JS (x) >>\n%%EOF\n",
        b"%PDF-1.4\n%%EOF\n",
        "application/pdf",
        "pdf-javascript",
    ),
    (
        "zip-traversal",
        zip_bytes(("../../etc/passwd", b"x")),
        samples.ZIP,
        "application/zip",
        "zip-path",
    ),
    ("zip-absolute", zip_bytes(("/etc/passwd", b"x")), samples.ZIP, "application/zip", "zip-path"),
    (
        "zip-bomb-ratio",
        lying_zip(),
        samples.ZIP,
        "application/zip",
        "zip-bomb",
    ),
    (
        "zip-nested",
        zip_bytes(("a.zip", zip_bytes(("b.zip", zip_bytes(("c.txt", b"x")))))),
        zip_bytes(("a.zip", zip_bytes(("c.txt", b"x")))),
        "application/zip",
        "zip-nesting",
    ),
    (
        "docm-macros",
        zip_bytes(*DOCX_PARTS, ("word/vbaProject.bin", b"\xd0\xcf\x11\xe0")),
        zip_bytes(*DOCX_PARTS),
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "office-macros",
    ),
    (
        "doc-vba",
        compound_file(macros=True),
        compound_file(macros=False),
        "application/msword",
        "office-macros",
    ),
    ("png-huge", png(60000, 60000), png(100, 100), "image/png", "image-pixels"),
    ("html-script", samples.HTML, HTML_OK, "text/html", "markup-script"),
    (
        "html-handler",
        b"<!DOCTYPE html><p onclick='x()'>hi</p>",
        HTML_OK,
        "text/html",
        "markup-script",
    ),
    (
        "html-js-url",
        b'<!DOCTYPE html><a href=" javascript:x()">x</a>',
        HTML_OK,
        "text/html",
        "markup-script",
    ),
    (
        "html-data-link",
        b'<!DOCTYPE html><a href="data:text/html,x">x</a>',
        HTML_OK,
        "text/html",
        "markup-script",
    ),
    (
        "html-svg-data-img",
        b'<!DOCTYPE html><img src="data:image/svg+xml,x">',
        HTML_OK,
        "text/html",
        "markup-script",
    ),
    (
        "html-iframe",
        b"<!DOCTYPE html><iframe src='https://x'></iframe>",
        HTML_OK,
        "text/html",
        "markup-embedding",
    ),
    (
        "html-object",
        b"<!DOCTYPE html><object data='x.swf'></object>",
        HTML_OK,
        "text/html",
        "markup-embedding",
    ),
    ("svg-script", samples.SVG, SVG_OK, "image/svg+xml", "markup-script"),
    (
        "svg-foreign",
        b'<svg xmlns="http://www.w3.org/2000/svg"><foreignObject><iframe '
        b'xmlns="http://www.w3.org/1999/xhtml" src="x"/></foreignObject></svg>',
        SVG_OK,
        "image/svg+xml",
        "markup-embedding",
    ),
    (
        "cda-entities",
        b'<?xml version="1.0"?><!DOCTYPE c [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]>'
        b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&b;</title></ClinicalDocument>',
        CDA_OK,
        "application/hl7-v3+xml",
        "markup-dtd",
    ),
    (
        "cda-js-link",
        b'<?xml version="1.0"?><ClinicalDocument xmlns="urn:hl7-org:v3"><text>'
        b'<linkHtml href="javascript:alert(1)">x</linkHtml></text></ClinicalDocument>',
        CDA_OK,
        "application/hl7-v3+xml",
        "markup-script",
    ),
]
