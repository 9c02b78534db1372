"""One agency per bundle, and archives written before that stay readable."""

from __future__ import annotations

import hashlib
import json

import pytest

from pipelines.archive import bundle, directory, index
from pipelines.core.batch import Commitment, SealedBatch, seal_records
from pipelines.core.commitment import RecordInput, content_sha256
from tests.support.faults import FaultyStore


def legacy_directory(store, entries) -> None:
    """Write directory shards as versions before the index did (``ids/<agency>/<h>.json``)."""
    shards: dict[str, dict] = {}
    for agency, rid, loc in entries:
        key = f"ids/{agency}/{hashlib.sha256(rid.encode()).hexdigest()[0]}.json"
        shards.setdefault(key, {"format": "anchorpipe.directory/1", "entries": {}})["entries"][rid] = list(loc)
    for key, doc in shards.items():
        store.put_immutable(key, json.dumps(doc).encode())


def test_bundles_live_under_their_agency():
    store = FaultyStore()
    batch = seal_records("dept-a", [RecordInput(f"r{i}", content_sha256(i)) for i in range(3)])
    _, locations, _ = bundle.write_batch(store, batch, [])
    assert list(store.objects) == [f"proofs/dept-a/{batch.id}.ndjson"]
    index.add_round(store, "dept-a", [(f"r{i}", loc) for i, loc in enumerate(locations)])
    assert directory.fetch_proof(store, "dept-a", "r2").record.id == "r2"


def test_a_batch_of_several_agencies_is_refused_rather_than_bundled_together():
    mixed = SealedBatch("b1", "2026-11-29T00:00:00Z", [Commitment("dept-a", "x", b"\x01" * 32, b"\x02" * 32),
                                                        Commitment("dept-b", "y", b"\x03" * 32, b"\x04" * 32)])
    store = FaultyStore()
    with pytest.raises(ValueError, match="2 agencies"):
        bundle.write_batch(store, mixed, [])
    assert store.objects == {}


def test_an_archive_written_before_per_agency_bundles_is_still_read():
    store = FaultyStore()
    batch = seal_records("dept-a", [RecordInput(f"r{i}", content_sha256(i)) for i in range(3)])
    data, locations = bundle.build_bundle(batch, [])
    store.put_immutable(bundle.legacy_bundle_key(batch.id), data)  # where the earlier version wrote it
    legacy_directory(store, [("dept-a", f"r{i}", loc) for i, loc in enumerate(locations)])
    assert directory.fetch_proof(store, "dept-a", "r1").batch.id == batch.id


def test_records_indexed_after_the_upgrade_and_before_it_are_both_found():
    store = FaultyStore()
    old = seal_records("dept-a", [RecordInput(f"old{i}", content_sha256(i)) for i in range(3)])
    data, locations = bundle.build_bundle(old, [])
    store.put_immutable(bundle.legacy_bundle_key(old.id), data)
    legacy_directory(store, [("dept-a", f"old{i}", loc) for i, loc in enumerate(locations)])
    new = seal_records("dept-a", [RecordInput(f"new{i}", content_sha256(i)) for i in range(3)])
    _, locations, _ = bundle.write_batch(store, new, [])
    index.add_round(store, "dept-a", [(f"new{i}", loc) for i, loc in enumerate(locations)])
    assert directory.fetch_proof(store, "dept-a", "old1").batch.id == old.id
    assert directory.fetch_proof(store, "dept-a", "new1").batch.id == new.id
