"""The inspection stage (service.Inspector): chooses the checks for an upload and runs them.

The checks are chosen by the sniffed type and by the declared type (both, when they differ: a
viewer may trust either), and by the leading bytes for the container formats (PDF, ZIP, OLE).
They read a local file: the store's staged temp file when it has one, else (S3) a copy spooled
to the data folder's temp space, read in chunks. They run in a worker thread, so the event loop
never waits on a parser. The first finding is refused with a 422 whose diagnostics say what was
found (never the content); the audit record of the request carries the same words
(api/audit_records.py), and the service discards the staged bytes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog

from fhirbin.errors import UnprocessableContent
from fhirbin.inspection.archives import check_zip, is_zip
from fhirbin.inspection.images import check_image
from fhirbin.inspection.markup import check_html, check_xml
from fhirbin.inspection.office import check_ole, is_ole
from fhirbin.inspection.pdf import check_pdf
from fhirbin.inspection.rules import Finding, Limits
from fhirbin.security.sniff import SNIFF_BYTES, Sniffed, sniff
from fhirbin.storage.base import StagedBlob

log = structlog.get_logger("fhirbin.inspection")

_HTML = frozenset({"text/html"})
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/tiff", "image/bmp", "image/webp")


def textual(media_type: str) -> bool:
    return media_type.startswith("text/") or media_type.endswith(("json", "xml"))


def kinds(media_type: str, head: bytes) -> set[str]:
    """The checks a media type and the leading bytes call for.

    PDF readers accept ``%PDF-`` anywhere in the first KiB, so a PDF behind a few bytes of
    something else is inspected too, unless ``media_type`` (the sniffed type) is text: a letter
    that mentions ``%PDF-`` is not a PDF, and searching its words for PDF names would refuse it.
    """
    found: set[str] = set()
    if media_type == "application/pdf" or (b"%PDF-" in head[:1024] and not textual(media_type)):
        found.add("pdf")
    if is_zip(head):
        found.add("zip")
    if is_ole(head):
        found.add("ole")
    if media_type in _IMAGE_TYPES:
        found.add("image")
    if media_type in _HTML:
        found.add("html")
    elif media_type.endswith(("/xml", "+xml")):
        found.add("xml")
    return found


#: The screening verdict (metrics.VERDICTS) an inspection refusal is counted as.
REFUSED = "inspection-refused"


@dataclass(frozen=True)
class Inspector:
    """Call it as ``await inspector(declared_type, sniffed, staged)``; raises 422 to refuse.
    ``verdicts`` hears ``inspection-refused`` for each refusal (metrics.VERDICTS)."""

    limits: Limits
    spool_dir: Path
    verdicts: Callable[[str], None] | None = None

    async def __call__(
        self, declared_type: str, sniffed: Sniffed | None, staged: StagedBlob
    ) -> None:
        head = b""
        async for chunk in staged.read(0, SNIFF_BYTES):
            head += chunk
        if sniffed is None:
            sniffed = await anyio.to_thread.run_sync(sniff, head)
        wanted = kinds(sniffed.media_type, head)
        declared = declared_type.split(";")[0].strip().lower()
        wanted |= kinds(declared, head if not textual(sniffed.media_type) else b"")
        if not wanted:
            return
        if staged.path is not None:
            finding = await anyio.to_thread.run_sync(self.check, wanted, staged.path)
        else:
            finding = await self._spooled(wanted, staged)
        if finding is not None:
            log.warning(
                "upload refused by inspection",
                rule=finding.rule,
                declared_type=declared_type,
                sniffed_type=sniffed.media_type,
                size=staged.info.size,
            )
            if self.verdicts is not None:
                self.verdicts(REFUSED)
            raise UnprocessableContent(
                f"The content was refused: {finding.found} (inspection rule {finding.rule}; "
                "docs/security.md#deep-inspection)"
            )

    async def _spooled(self, wanted: set[str], staged: StagedBlob) -> Finding | None:
        """Copy a remote staged blob to a local temp file, chunk by chunk, and check that."""
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.spool_dir, prefix=".inspect-") as spool:
            async for chunk in staged.read():
                await anyio.to_thread.run_sync(spool.write, chunk)
            spool.flush()
            return await anyio.to_thread.run_sync(self.check, wanted, Path(spool.name))

    def check(self, wanted: set[str], path: Path) -> Finding | None:
        """Run the checks ``wanted`` calls for on the file at ``path``; the first finding."""
        allowed = self.limits.allowed
        checks: list[Callable[[], Finding | None]] = []
        if "pdf" in wanted:
            checks.append(lambda: check_pdf(path, allowed))
        if "zip" in wanted:
            checks.append(lambda: check_zip(path, self.limits))
        if "ole" in wanted and "office-macros" not in allowed:
            checks.append(lambda: check_ole(path))
        if "image" in wanted and "image-pixels" not in allowed:
            checks.append(lambda: check_image(path, self.limits.max_pixels))
        if "xml" in wanted:
            checks.append(lambda: check_xml(path, allowed))
        if "html" in wanted:
            checks.append(lambda: check_html(path, allowed))
        for run in checks:
            try:
                finding = run()
            except Exception:  # a parser failing in a way its check did not foresee
                # Fail closed: content that crashes an inspecting parser may crash a viewer too.
                log.exception("inspection failed", kinds=sorted(wanted))
                if "inspection-failed" in allowed:
                    continue
                return Finding("inspection-failed", "The content could not be inspected.")
            if finding is not None:
                return finding
        return None
