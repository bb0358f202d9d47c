"""Small, real specimens of the formats the screening rules judge (built here, not shipped).

Each is the smallest content libmagic recognises as that format; the hostile ones are inert
(an executable header with no code, scripts that only echo).
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0\0\0\0"))
        + chunk(b"IEND", b"")
    )


def zip_of(*files: tuple[str, str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, text in files:
            archive.writestr(name, text)
    return out.getvalue()


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG = _png()
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\0" * 64
GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
CSV = b"patient,code,value\n1,8867-4,72\n2,8867-4,80\n"
TEXT = b"Discharge summary: the patient is well.\n"
FHIR_JSON = json.dumps(
    {"resourceType": "Patient", "id": "p1", "name": [{"family": "Doe"}]}
).encode()
FHIR_XML = b'<Patient xmlns="http://hl7.org/fhir"><id value="p1"/></Patient>'
CDA = (
    b'<?xml version="1.0"?>\n'
    b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>x</title></ClinicalDocument>'
)
HL7V2 = b"MSH|^~\\&|LAB|FAC|EHR|FAC|20240101||ORU^R01|1|P|2.5\rPID|1||123\r"
DOCX = zip_of(
    ("[Content_Types].xml", "<Types/>"),
    ("_rels/.rels", "<Relationships/>"),
    ("word/document.xml", "<w:document/>"),
)
ZIP = zip_of(("notes.txt", "hello"))
WAV = (
    b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x44\xac\x00\x00"
    b"\x88\x58\x01\x00\x02\x00\x10\x00data\x00\x00\x00\x00"
)

# --- hostile ---
HTML = (
    b"<!DOCTYPE html><html><body><script>fetch('/steal?c='+document.cookie)</script></body></html>"
)
SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(document.domain)">'
    b"<script>alert(1)</script></svg>"
)
PE = (
    b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00"
    + b"\0" * 44
    + struct.pack("<I", 64)
    + b"PE\0\0\x4c\x01"
    + b"\0" * 300
)
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\0" * 8 + b"\x02\x00\x3e\x00\x01\x00\x00\x00" + b"\0" * 200
MACH_O = b"\xcf\xfa\xed\xfe\x07\x00\x00\x01\x03\x00\x00\x00\x02\x00\x00\x00" + b"\0" * 200
SHELL = b"#!/bin/sh\necho pwned\n"
NODE_SCRIPT = b"#!/usr/bin/env node\nconsole.log('pwned')\n"
BATCH = b"@echo off\r\necho pwned\r\n"
#: A DOS .com guess: libmagic calls this x-dosexec from its first bytes, without an MZ header.
COM_LOOKALIKE = bytes.fromhex("eb3cbba7073e8529") + bytes(range(256)) * 4
