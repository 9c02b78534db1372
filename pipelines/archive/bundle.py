"""Batch bundles: every proof of a batch as one NDJSON object, ``proofs/<batch id>.ndjson``, written once.

A bundle holds one agency's records only when its batch does; see docs/archive.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipelines.core.anchors import Anchor
from pipelines.core.batch import SealedBatch
from pipelines.storage import ObjectStore

#: Where one record's proof is: (batch id, byte offset in the bundle, byte length).
Location = tuple[str, int, int]


def bundle_key(batch_id: str) -> str:
    return f"proofs/{batch_id}.ndjson"


def build_bundle(batch: SealedBatch, anchors: Sequence[Anchor]) -> tuple[bytes, list[Location]]:
    """The batch's NDJSON bundle and each record's (batch id, offset, length) in it, in leaf order."""
    import orjson  # the server's fast codec (only workers write bundles)

    parts, locations, offset = [], [], 0
    for doc in batch.proofs(anchors):
        line = orjson.dumps(doc) + b"\n"
        parts.append(line)
        locations.append((batch.id, offset, len(line) - 1))
        offset += len(line)
    return b"".join(parts), locations


def write_batch(store: ObjectStore, batch: SealedBatch, anchors: Sequence[Anchor]) -> list[Location]:
    """Write the batch's bundle once (an identical re-write succeeds) and return the locations."""
    data, locations = build_bundle(batch, anchors)
    store.put_immutable(bundle_key(batch.id), data)
    return locations
