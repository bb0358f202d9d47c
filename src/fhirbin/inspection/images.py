"""Images: the pixel count an image declares, read from its header without decoding it.

A 300 KB PNG may declare 60,000 x 60,000 pixels; the viewer that decodes it needs gigabytes.
Pillow's ``Image.open`` reads the header only; its own decompression-bomb guard (a warning, then
an error, at a global limit) is silenced and replaced by fhirbin's limit and message.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from fhirbin.inspection.rules import Finding


def check_image(path: Path, max_pixels: int) -> Finding | None:
    """A finding when the image at ``path`` declares more than ``max_pixels`` pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
    except Image.DecompressionBombError:
        return _too_large("more pixels than Pillow itself will open", max_pixels)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None  # a format Pillow does not read: the type screening judged it
    if width * height > max_pixels:
        return _too_large(f"{width} x {height} pixels", max_pixels)
    return None


def _too_large(what: str, max_pixels: int) -> Finding:
    return Finding(
        "image-pixels",
        f"The image declares {what}, over this server's limit of {max_pixels} pixels.",
    )
