"""What an inspection finds and the limits it applies: pure values shared by every check.

Each check (pdf.py, archives.py, office.py, images.py, markup.py) reads one staged file and
returns the first :class:`Finding` or None. A finding names its rule, which is also the name an
operator lists in ``FHIRBIN_INSPECT_ALLOW`` to turn that one rule off (docs/security.md), and
says what was found in the server's own words: it never quotes the content.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MiB = 1024 * 1024

#: Every rule, by name, with what it refuses (docs/security.md#deep-inspection).
RULES: dict[str, str] = {
    "pdf-javascript": "JavaScript in a PDF (/JS, /JavaScript actions, /OpenAction, /AA)",
    "pdf-launch": "a PDF action that launches a program (/Launch)",
    "pdf-embedded-files": "files embedded in a PDF (/EmbeddedFile, /EmbeddedFiles)",
    "pdf-xfa": "an XFA form in a PDF (/XFA)",
    "pdf-richmedia": "rich media (Flash, video) in a PDF (/RichMedia)",
    "zip-bomb": "a ZIP that expands beyond the limits (size, ratio, overlapping entries)",
    "zip-path": "a ZIP entry with an absolute path or a '..' component",
    "zip-nesting": "archives nested deeper than the limit",
    "office-macros": "VBA or Basic macros in an Office or OpenDocument file",
    "image-pixels": "an image declaring more pixels than the limit",
    "markup-script": "script in HTML, XHTML, SVG or XML (<script>, on* handlers, "
    "javascript: and scriptable data: URLs)",
    "markup-embedding": "frames and embedded objects (<iframe>, <object>, <embed>, "
    "<foreignObject> with active content)",
    "markup-dtd": "an XML internal DTD subset or entity declaration",
    "inspection-failed": "content whose inspection failed unexpectedly (a parser error the "
    "check does not handle); logged with the error",
}


@dataclass(frozen=True)
class Finding:
    """The first thing a check refused: ``rule`` (a key of RULES) and what was found."""

    rule: str
    found: str

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown inspection rule {self.rule!r}")


@dataclass(frozen=True)
class Limits:
    """The limits the checks apply (FHIRBIN_INSPECT_* settings)."""

    #: total declared uncompressed size of a ZIP's entries, nested archives included
    zip_max_expanded: int = 512 * MiB
    #: an entry expanding more than this many times over is decompressed (bounded) to verify
    zip_max_ratio: int = 100
    #: archives inside archives: 1 = a plain ZIP, 2 = a ZIP holding ZIPs, ...
    zip_max_depth: int = 2
    #: width x height an image may declare
    max_pixels: int = 100_000_000
    #: rules turned off (FHIRBIN_INSPECT_ALLOW)
    allowed: frozenset[str] = field(default_factory=frozenset)


def parse_rules(text: str, setting: str) -> frozenset[str]:
    """A comma-separated list of rule names; unknown names are a ValueError naming ``setting``."""
    names = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(names - RULES.keys())
    if unknown:
        raise ValueError(
            f"{setting}: unknown rule(s) {', '.join(unknown)}; known: {', '.join(RULES)}"
        )
    return names


class Refused(Exception):
    """Raised inside a check (from a parser callback) to stop at the first finding."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.found)
        self.finding = finding
