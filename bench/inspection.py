"""The cost of deep inspection: uploads with FHIRBIN_INSPECT=reject against =off, same run.

    PYTHONPATH=. .venv/bin/python bench/inspection.py [--size-mib 100] [--runs 3] [--small 500]

Measured through ``BinaryService.create`` of a runtime built from settings (SQLite catalogue,
local content folder, default screening without clamd), without HTTP: what is compared is the
write path with and without the inspection stage. Files: a PDF of the given size (one large
stream, honest), a ZIP of the same size (incompressible entries of 1 MiB, deflated), and small
uploads (a 4 KiB PDF) for a rate. Also the two PDF parsers considered (pikepdf, pypdf) on the
large PDF and on a PDF of many small objects. Prints Markdown; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

from fhirbin.config import load_settings
from fhirbin.runtime import open_runtime
from fhirbin.security.access import system_access
from tests.inspection.corpus import pdf

MiB = 1024 * 1024


def make_pdf(path: Path, size: int) -> None:
    stream = b"<< /Length %d >>\nstream\n" % size + os.urandom(size) + b"\nendstream"
    path.write_bytes(pdf(b"", stream))


def make_many_object_pdf(path: Path, count: int) -> None:
    objects = [b"<< /Type /Annot /Subtype /Text /Contents (note %d) >>" % i for i in range(count)]
    path.write_bytes(pdf(b"", *objects))


def make_zip(path: Path, size: int) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for number in range(size // MiB):
            archive.writestr(f"part/{number:04}.bin", os.urandom(MiB))


async def chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as file:
        while block := file.read(MiB):
            yield block


async def upload_rate(
    mode: str, work: Path, files: dict[str, tuple[Path, str]], runs: int, small: int
) -> dict[str, float]:
    settings = load_settings(
        {}, {"data_dir": work / mode, "inspect": mode, "max_binary_size": 1024 * MiB}
    )
    runtime = await open_runtime(settings)
    access = system_access(runtime.base_url)
    rates: dict[str, float] = {}
    try:
        for name, (path, content_type) in files.items():
            seconds = []
            for _ in range(runs):
                start = time.perf_counter()
                await runtime.service.create(content_type, None, chunks(path), access=access)
                seconds.append(time.perf_counter() - start)
            rates[name] = path.stat().st_size / MiB / statistics.median(seconds)
        tiny = pdf(b"", b"<< /Length 4000 >>\nstream\n" + b"x" * 4000 + b"\nendstream")
        start = time.perf_counter()
        for number in range(small):
            body = tiny + str(number).encode()  # distinct content: no deduplication

            async def once(data: bytes = body) -> AsyncIterator[bytes]:
                yield data

            await runtime.service.create("application/pdf", None, once(), access=access)
        rates["small PDF uploads/s"] = small / (time.perf_counter() - start)
    finally:
        await runtime.close()
    return rates


def parser_times(big: Path, many: Path) -> list[tuple[str, str, float]]:
    import pikepdf

    try:
        import pypdf
    except ImportError:  # only for the comparison that chose pikepdf; not a dependency
        pypdf = None

    rows = []
    for label, path in (("large stream", big), ("many objects", many)):
        start = time.perf_counter()
        with pikepdf.open(path) as document:
            for obj in document.objects:
                if isinstance(obj, pikepdf.Dictionary):
                    list(obj.keys())
        rows.append(("pikepdf", label, time.perf_counter() - start))
        if pypdf is None:
            continue
        start = time.perf_counter()
        reader = pypdf.PdfReader(path)
        for number in range(1, len(reader.xref_objStm) + 10_000):
            try:
                reader.get_object(number)
            except Exception:
                break
        rows.append(("pypdf", label, time.perf_counter() - start))
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--small", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=".") as folder:
        work = Path(folder)
        big_pdf, big_zip, many = work / "big.pdf", work / "big.zip", work / "many.pdf"
        make_pdf(big_pdf, args.size_mib * MiB)
        make_zip(big_zip, args.size_mib * MiB)
        make_many_object_pdf(many, 20_000)
        files = {
            f"{args.size_mib} MiB PDF MiB/s": (big_pdf, "application/pdf"),
            f"{args.size_mib} MiB ZIP MiB/s": (big_zip, "application/zip"),
        }
        results: dict[str, dict[str, list[float]]] = {}
        for mode in ("off", "reject", "off", "reject"):  # interleaved against drift
            rates = await upload_rate(mode, work, files, args.runs, args.small)
            for name, rate in rates.items():
                results.setdefault(name, {}).setdefault(mode, []).append(rate)
        print(
            "| upload | inspection off: median (lowest-highest) | inspection on | on / off "
            "(medians) |\n|---|---|---|---|"
        )
        for name, by_mode in results.items():
            off, on = by_mode["off"], by_mode["reject"]
            print(
                f"| {name} | {statistics.median(off):.1f} ({min(off):.1f}-{max(off):.1f}) | "
                f"{statistics.median(on):.1f} ({min(on):.1f}-{max(on):.1f}) | "
                f"{statistics.median(on) / statistics.median(off):.2f} |"
            )
        print("\npypdf rows only where pypdf is installed (`pip install pypdf`).")
        print("\n| PDF parser | file | seconds |\n|---|---|---|")
        for library, label, seconds in parser_times(big_pdf, many):
            print(f"| {library} | {label} | {seconds:.3f} |")


if __name__ == "__main__":
    asyncio.run(main())
