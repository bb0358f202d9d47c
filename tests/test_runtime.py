"""The composition root: what it builds from settings, and what it does to the data folder."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from fhirbin.config import load_settings
from fhirbin.runtime import open_runtime
from fhirbin.storage.cached import CachedBlobStore
from fhirbin.storage.filesystem import FilesystemBlobStore

pytestmark = pytest.mark.anyio


async def test_an_operators_0755_data_folder_becomes_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    runtime = await open_runtime(load_settings({}, {"data_dir": data}), {})
    try:
        assert isinstance(runtime.blobs, CachedBlobStore)
        assert isinstance(runtime.blobs.inner, FilesystemBlobStore)
        assert runtime.keys.signer.kid  # a signing key was made in the catalogue
    finally:
        await runtime.close()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700


async def test_a_folder_holding_other_things_is_left_as_it_is(tmp_path: Path) -> None:
    shared = tmp_path / "srv"
    shared.mkdir()
    shared.chmod(0o755)
    (shared / "someone-elses.txt").write_text("not ours")
    runtime = await open_runtime(load_settings({}, {"data_dir": shared}), {})
    await runtime.close()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755
