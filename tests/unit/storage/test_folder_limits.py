"""A folder archive is hostile input: links out of it, linked folders, devices, pipes and sparse giants are refused
by what is opened, before anything is read."""

from __future__ import annotations

import os

import pytest

from pipelines.core import tiles
from pipelines.errors import UnusableObject
from pipelines.ledger.tlog import MAX_HASH_TILE_BYTES, LogReader
from pipelines.storage.local import LocalStore
from tests.support.archives import GIB, SIGNER, first_bundle, sealed_archive


def test_a_link_out_of_the_folder_is_refused_not_followed(tmp_path):
    root = sealed_archive(tmp_path / "a")
    (tmp_path / "outside").write_bytes(b"secret")
    bundle = first_bundle(root)
    bundle.unlink()
    bundle.symlink_to(tmp_path / "outside")
    store = LocalStore(root)
    with pytest.raises(UnusableObject, match="symbolic link"):
        store.get(bundle.relative_to(root).as_posix())
    assert bundle.relative_to(root).as_posix() in store.list_keys("proofs/")  # listed, so an audit can name it


def test_a_linked_folder_inside_the_log_is_refused(tmp_path):
    root = sealed_archive(tmp_path / "a")
    entries = root / "log" / "tile" / "entries"
    os.rename(entries, tmp_path / "elsewhere")
    entries.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(UnusableObject, match="symbolic link"):
        LogReader(LocalStore(root / "log"), [SIGNER.verifier()]).read_bundle(0, 3)
    assert not [k for k in LocalStore(root / "log").list_keys("tile/entries/") if k != "tile/entries"]


def test_devices_and_pipes_are_refused(tmp_path):
    root = sealed_archive(tmp_path / "a")
    tile = root / "log" / tiles.tile_path(0, 0, 3)
    tile.unlink()
    tile.symlink_to("/dev/zero")
    with pytest.raises(UnusableObject):
        LocalStore(root / "log").get(tiles.tile_path(0, 0, 3))
    fifo = root / "log" / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UnusableObject, match="not a regular file"):
        LocalStore(root / "log").get("fifo")  # and the open does not block


def test_a_sparse_10_gib_tile_is_refused_by_its_size_before_any_read(tmp_path):
    root = sealed_archive(tmp_path / "a")
    tile = root / "log" / tiles.tile_path(0, 0, 3)
    with tile.open("r+b") as fh:
        fh.truncate(10 * GIB)
    reader = LogReader(LocalStore(root / "log"), [SIGNER.verifier()])
    with pytest.raises(UnusableObject, match=f"over the {3 * 32:,} bytes"):
        reader.read_tile(0, 0, 3)
    assert MAX_HASH_TILE_BYTES == 256 * 32
