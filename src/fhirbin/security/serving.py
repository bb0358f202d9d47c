"""How native content is served safely: which headers stop a browser from running it."""

from __future__ import annotations


def native_headers(binary_id: str, content_type: str) -> dict[str, str]:
    """Extra response headers for a native read (being written: issue 4, safe serving)."""
    return {}
