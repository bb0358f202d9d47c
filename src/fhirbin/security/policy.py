"""Which types an upload may have: the deny list, the allow list and the mismatch rule.

Pure policy (no I/O): scanning/screener.py feeds it the declared type and libmagic's verdict.
R4 binary.html#rest ("Security") and security.html#attachments warn that Binary content can be
executable; fhirbin refuses executables and scripts by default, checking the deny list against
BOTH the declared and the sniffed type (an executable does not get in by being called a PDF,
nor by being called an executable of a type nobody listed), the allow list against the declared
type, and the declared type against the sniffed one with the table in security/mediatypes.py.
Every refusal is a 415 (the type is what is refused) with an OperationOutcome saying what was
found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fhirbin.config import SettingsError
from fhirbin.errors import UnsupportedMediaType
from fhirbin.fhir.negotiate import media_type_essence
from fhirbin.security.mediatypes import accepts, canonical
from fhirbin.security.sniff import Sniffed

#: What ``executables`` in FHIRBIN_DENY_TYPES stands for: native programs, installers and
#: shortcuts, byte code, and scripts a desktop or a browser would run. Aliases are listed so
#: that a *declared* type is caught under every name clients use; sniffed types arrive under
#: libmagic's names, which are here too.
EXECUTABLES: tuple[str, ...] = (
    # Windows PE and DOS programs, installers, shortcuts, HTML applications
    "application/vnd.microsoft.portable-executable",
    "application/x-dosexec",
    "application/x-msdownload",
    "application/x-ms-dos-executable",
    "application/x-msdos-program",
    "application/x-ms-installer",
    "application/x-msi",
    "application/x-ms-shortcut",
    "application/x-ms-application",
    "application/hta",
    # ELF (Linux and most Unix) and Mach-O (macOS) binaries
    "application/x-executable",
    "application/x-sharedlib",
    "application/x-pie-executable",
    "application/x-object",
    "application/x-elf",
    "application/x-mach-binary",
    "application/x-mach-o-executable",
    # byte code: Java, Android, WebAssembly, Flash
    "application/x-java-applet",
    "application/java-vm",
    "application/x-java-class",
    "application/java-archive",
    "application/x-java-archive",
    "application/x-java-jnlp-file",
    "application/vnd.android.package-archive",
    "application/wasm",
    "application/x-shockwave-flash",
    # shell and JavaScript
    "text/x-shellscript",
    "application/x-sh",
    "application/x-shellscript",
    "application/x-csh",
    "text/x-csh",
    "text/javascript",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "application/x-ecmascript",
    "text/ecmascript",
    "text/jscript",
    # Windows scripts
    "text/x-msdos-batch",
    "application/x-bat",
    "application/bat",
    "application/x-msdos-batch",
    "text/vbscript",
    "text/vbs",
    "application/x-vbscript",
    "application/x-powershell",
    "text/x-powershell",
    # other interpreters (libmagic recognises them by their #! line)
    "text/x-script.python",
    "text/x-python",
    "application/x-python",
    "application/x-python-code",
    "text/x-perl",
    "application/x-perl",
    "text/x-ruby",
    "application/x-ruby",
    "text/x-php",
    "application/x-php",
    "application/x-httpd-php",
    "text/x-tcl",
    "application/x-tcl",
    "text/x-lua",
    "text/x-awk",
)

_NAME = r"[A-Za-z0-9!#$&^_.+-]+"
_PATTERN = re.compile(rf"^(?:{_NAME}/{_NAME}|{_NAME}/\*|\*/\*)$")


def parse_types(raw: str, setting: str) -> tuple[str, ...]:
    """A comma-separated list of media types and ``type/*`` wildcards, canonicalised;
    ``executables`` expands to :data:`EXECUTABLES`."""
    found: list[str] = []
    for item in raw.split(","):
        entry = item.strip()
        if not entry:
            continue
        if entry.lower() == "executables":
            found.extend(canonical(name) for name in EXECUTABLES)
            continue
        if not _PATTERN.match(entry):
            raise SettingsError(f"{setting}: {entry!r} is not a media type or type/* pattern")
        found.append(canonical(entry))
    return tuple(dict.fromkeys(found))


def _matches(patterns: tuple[str, ...], media_type: str) -> bool:
    name = canonical(media_type)
    top = name.split("/", 1)[0]
    return any(p == name or p == "*/*" or p == f"{top}/*" for p in patterns)


_EXECUTABLE_SET = frozenset(canonical(name) for name in EXECUTABLES)


def _why(media_type: str) -> str:
    if canonical(media_type) in _EXECUTABLE_SET:
        return "executables and scripts are refused (FHIRBIN_DENY_TYPES)"
    return "this server refuses that type (FHIRBIN_DENY_TYPES)"


@dataclass(frozen=True)
class TypePolicy:
    """The type rules in force (runtime.py builds them from the settings)."""

    deny: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    reject_mismatch: bool = True

    @property
    def sniffs(self) -> bool:
        """Whether the content has to be looked at (the allow list judges the label only)."""
        return bool(self.deny) or self.reject_mismatch

    def check_declared(self, declared_type: str) -> None:
        """Before any byte is read: the declared type against the deny and allow lists."""
        declared = media_type_essence(declared_type)
        if _matches(self.deny, declared):
            raise UnsupportedMediaType(
                f"This server does not accept content of type {declared}: {_why(declared)}."
            )
        if self.allow and not _matches(self.allow, declared):
            raise UnsupportedMediaType(
                f"This server accepts only the content types in FHIRBIN_ALLOW_TYPES, and "
                f"{declared} is not one of them."
            )

    def check_content(self, declared_type: str, found: Sniffed) -> None:
        """After sniffing: what the content is against the deny list and the declared type."""
        declared = media_type_essence(declared_type)
        if found.identified and _matches(self.deny, found.media_type):
            raise UnsupportedMediaType(
                f"Binary content declared {declared} but the content is {found}: "
                f"{_why(found.media_type)}."
            )
        if self.reject_mismatch and not accepts(declared, found):
            raise UnsupportedMediaType(
                f"Binary content declared {declared} but the content is {found}. Declare the "
                "real type (or application/octet-stream)."
            )
