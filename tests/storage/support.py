"""What the storage tests share: a real, tiny filesystem to fill up."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def tiny_filesystem(mount_point: Path, *, size_kib: int) -> Iterator[Path]:
    """A tmpfs of ``size_kib`` mounted at ``mount_point`` (needs root, as CI and the
    developers' machines run the suite); unmounted afterwards."""
    if os.geteuid() != 0:
        raise RuntimeError("the full-disk tests mount a tmpfs and must run as root")
    mount_point.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0700", "tmpfs", str(mount_point)],
        check=True,
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)
