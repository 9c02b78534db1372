"""A small sealed folder archive, to be made hostile by the tests."""

from __future__ import annotations

from pathlib import Path

from pipelines.archive.bundle import build_bundle, bundle_key
from pipelines.core.batch import seal_records
from pipelines.core.commitment import RecordInput
from pipelines.core.note import Signer
from pipelines.ledger.tlog import TransparencyLog
from pipelines.storage.local import LocalStore

SIGNER = Signer.generate("hostile.example/log")


GIB = 1 << 30


def sealed_archive(root: Path, batches: int = 3, records: int = 300) -> Path:
    """A folder archive as the service writes it: bundles per agency and the log beside them."""
    log = TransparencyLog.create(LocalStore(root / "log"), [SIGNER])
    for k in range(batches):
        batch = seal_records("dept-a", [RecordInput(f"b{k}-{i}", bytes([i % 256]) * 32) for i in range(records)])
        data, _ = build_bundle(batch, [log.anchor([batch.head])[batch.id]])
        path = root / bundle_key("dept-a", batch.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def first_bundle(root: Path) -> Path:
    return sorted((root / "proofs" / "dept-a").glob("*.ndjson"))[0]
