"""Office documents in the OLE (Compound File) format: VBA and Excel 4 macros, via oletools.

OOXML and OpenDocument files are ZIPs; their macro parts are found by name in archives.py. The
older binary formats (.doc, .xls, .ppt) keep macros in OLE storages, which oletools' olevba
finds (it reads the storage directory, not the whole file into memory). oletools is imported
at the first OLE upload: its import takes a moment that a server without such uploads need not
pay.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from fhirbin.inspection.rules import Finding

OLE_MAGIC = bytes.fromhex("d0cf11e0a1b11ae1")

# olevba logs at ERROR for ordinary oddities of the files it reads; fhirbin reports findings.
logging.getLogger("olevba").setLevel(logging.CRITICAL)


def is_ole(head: bytes) -> bool:
    return head.startswith(OLE_MAGIC)


def check_ole(path: Path) -> Finding | None:
    """A finding when the OLE file at ``path`` holds VBA or XLM macros."""
    with warnings.catch_warnings():  # olevba's grammar uses pyparsing's deprecated names
        warnings.simplefilter("ignore", DeprecationWarning)
        from oletools.olevba import VBA_Parser

    try:
        parser = VBA_Parser(str(path))
    except Exception:
        return None
    try:
        if parser.detect_vba_macros() or parser.detect_xlm_macros():
            return Finding("office-macros", "The Office document contains macros.")
    except Exception:
        return None
    finally:
        parser.close()
    return None
