"""libmagic (python-magic) against Magika on the screening corpus (tests/security/samples.py).

    PYTHONPATH=. .venv/bin/python bench/sniffers.py   (needs `pip install magika` for Magika)

For each sample: what it really is (the format the screening rules must recognise), each
sniffer's answer, whether that answer names the right format, and the time per call.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from fhirbin.security.sniff import sniff
from tests.security import samples

#: sample -> the media types that count as recognising it
TRUTH: dict[str, tuple[bytes, set[str]]] = {
    "PDF": (samples.PDF, {"application/pdf"}),
    "PNG": (samples.PNG, {"image/png"}),
    "JPEG": (samples.JPEG, {"image/jpeg"}),
    "GIF": (samples.GIF, {"image/gif"}),
    "CSV": (samples.CSV, {"text/csv"}),
    "TEXT": (samples.TEXT, {"text/plain"}),
    "FHIR_JSON": (samples.FHIR_JSON, {"application/json"}),
    "FHIR_XML": (samples.FHIR_XML, {"text/xml", "application/xml"}),
    "CDA": (samples.CDA, {"text/xml", "application/xml"}),
    "HL7V2": (samples.HL7V2, {"text/plain", "application/x-hl7", "text/x-hl7"}),
    "DOCX": (
        samples.DOCX,
        {"application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
    ),
    "ZIP": (samples.ZIP, {"application/zip"}),
    "WAV": (samples.WAV, {"audio/x-wav", "audio/wav", "audio/vnd.wave"}),
    "HTML (hostile)": (samples.HTML, {"text/html"}),
    "SVG (hostile)": (samples.SVG, {"image/svg+xml"}),
    "PE (hostile)": (
        samples.PE,
        {"application/vnd.microsoft.portable-executable", "application/x-dosexec"},
    ),
    "ELF (hostile)": (samples.ELF, {"application/x-executable", "application/x-elf"}),
    "Mach-O (hostile)": (samples.MACH_O, {"application/x-mach-binary", "application/x-mach-o"}),
    "shell (hostile)": (samples.SHELL, {"text/x-shellscript", "application/x-sh", "text/x-sh"}),
    "node (hostile)": (samples.NODE_SCRIPT, {"application/javascript", "text/javascript"}),
    "batch (hostile)": (samples.BATCH, {"text/x-msdos-batch", "application/x-bat"}),
    "DOS .com look-alike": (samples.COM_LOOKALIKE, {"application/octet-stream"}),
    "random bytes": (os.urandom(64 * 1024), {"application/octet-stream"}),
}


def libmagic(content: bytes) -> str:
    return sniff(content).media_type


def magika_sniffer() -> Callable[[bytes], str] | None:
    try:
        from magika import Magika
    except ImportError:
        return None
    engine = Magika()

    def detect(content: bytes) -> str:
        return str(engine.identify_bytes(content).output.mime_type)

    return detect


def timed(fn: Callable[[bytes], str], content: bytes, rounds: int = 50) -> float:
    fn(content)
    start = time.perf_counter()
    for _ in range(rounds):
        fn(content)
    return (time.perf_counter() - start) / rounds


def main() -> None:
    sniffers: dict[str, Callable[[bytes], str]] = {"libmagic": libmagic}
    start = time.perf_counter()
    magika = magika_sniffer()
    if magika is not None:
        magika(b"warm-up")
        print(f"Magika model load and first call: {time.perf_counter() - start:.2f} s")
        sniffers["magika"] = magika
    right = dict.fromkeys(sniffers, 0)
    total_time = dict.fromkeys(sniffers, 0.0)
    print(f"{'sample':22} " + " ".join(f"{name:52}" for name in sniffers))
    for label, (content, expected) in TRUTH.items():
        cells = []
        for name, fn in sniffers.items():
            answer = fn(content)
            ok = answer in expected
            right[name] += ok
            seconds = timed(fn, content)
            total_time[name] += seconds
            cells.append(f"{('ok  ' if ok else 'MISS')} {answer[:36]:36} {seconds * 1e6:7.0f} µs")
        print(f"{label:22} " + " ".join(f"{c:52}" for c in cells))
    for name in sniffers:
        print(
            f"{name}: {right[name]}/{len(TRUTH)} right, "
            f"mean {total_time[name] / len(TRUTH) * 1e6:.0f} µs per call"
        )


if __name__ == "__main__":
    main()
