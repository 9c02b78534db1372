"""Batch bundles: every proof of a batch as one NDJSON object, ``proofs/<agency>/<batch id>.ndjson``.

A batch whose proofs are upgraded with external anchors gets a new bundle,
``proofs/<agency>/<batch id>.u<log size>.ndjson``; every bundle is written once
and never replaced, and the index (pipelines.archive.index) points at the newest.

Batches are sealed per agency, so a bundle holds one agency's proofs and read
access can be granted per agency prefix (docs/archive.md). Archives written
before that keep their bundles at ``proofs/<batch id>.ndjson``, which readers
still find (:func:`legacy_bundle_key`).
"""

from __future__ import annotations

from collections.abc import Sequence

from pipelines.core.anchors import Anchor
from pipelines.core.batch import SealedBatch
from pipelines.storage import ObjectStore

#: Where one record's proof is: (batch id, byte offset in the bundle, byte length).
Location = tuple[str, int, int]


def bundle_key(agency: str, batch_id: str) -> str:
    return f"proofs/{agency}/{batch_id}.ndjson"


def legacy_bundle_key(batch_id: str) -> str:
    """Where archives written before per-agency batches keep a bundle (read, never written)."""
    return f"proofs/{batch_id}.ndjson"


def bundle_name(batch_id: str, upgrade: int | None = None) -> str:
    """A bundle's name: the batch id, and for an upgraded bundle ``.u<log size>`` of the round it carries."""
    return batch_id if upgrade is None else f"{batch_id}.u{upgrade}"


def bundle_version(name: str) -> tuple[str, int]:
    """(batch id, log size of its upgrade or -1 for the first bundle) of a bundle name."""
    batch_id, sep, size = name.rpartition(".u")
    return (batch_id, int(size)) if sep and size.isdigit() else (name, -1)


def key_for(batch: SealedBatch, upgrade: int | None = None) -> str:
    """Where ``batch``'s bundle goes: under its agency (a batch holds one agency's records)."""
    agencies = {c.agency for c in batch.commitments}
    if len(agencies) != 1:
        raise ValueError(f"batch {batch.id} holds records of {len(agencies)} agencies, not one")
    return bundle_key(agencies.pop(), bundle_name(batch.id, upgrade))


def build_bundle(batch: SealedBatch, anchors: Sequence[Anchor], upgrade: int | None = None
                 ) -> tuple[bytes, list[Location]]:
    """The batch's NDJSON bundle and each record's (bundle name, offset, length) in it, in leaf order."""
    import orjson  # the server's fast codec (only workers write bundles)

    name = bundle_name(batch.id, upgrade)
    parts, locations, offset = [], [], 0
    for doc in batch.proofs(anchors):
        line = orjson.dumps(doc) + b"\n"
        parts.append(line)
        locations.append((name, offset, len(line) - 1))
        offset += len(line)
    return b"".join(parts), locations


def write_batch(store: ObjectStore, batch: SealedBatch, anchors: Sequence[Anchor], upgrade: int | None = None
                ) -> tuple[str, list[Location], int]:
    """Write the batch's bundle once (an identical re-write succeeds); return its key, the locations and
    its size in bytes. ``upgrade``: the log size of the external anchoring round whose receipts ``anchors``
    hold: a new object beside the first bundle, which stays as it is (write-once)."""
    data, locations = build_bundle(batch, anchors, upgrade)
    key = key_for(batch, upgrade)
    store.put_immutable(key, data)
    return key, locations, len(data)


def reanchor(data: bytes, batch_id: str, anchors: Sequence[Anchor], upgrade: int) -> tuple[bytes, list[Location]]:
    """The bundle ``data`` with every proof's anchors replaced by ``anchors``, named for ``upgrade``.

    A bundle's proofs end with their batch's anchors (the last member, the same on every line), so each
    line keeps its bytes up to that member: no proof is rebuilt. ValueError if ``data`` is not such a
    bundle of ``batch_id`` (the caller then rebuilds it from the state)."""
    import orjson

    lines = data.split(b"\n")
    if not lines or lines[-1] != b"" or len(lines) < 2:
        raise ValueError("not an NDJSON bundle")
    first = orjson.loads(lines[0])
    if first.get("batch", {}).get("id") != batch_id or list(first)[-1] != "anchors":
        raise ValueError(f"not a bundle of batch {batch_id} ending with its anchors")
    old = b'"anchors":' + orjson.dumps(first["anchors"]) + b"}"
    new = b'"anchors":' + orjson.dumps([a.model_dump(mode="json") for a in anchors]) + b"}"
    name = bundle_name(batch_id, upgrade)
    parts, locations, offset = [], [], 0
    for line in lines[:-1]:
        if not line.endswith(old):
            raise ValueError(f"a proof of batch {batch_id} does not end with the batch's anchors")
        out = line[: len(line) - len(old)] + new + b"\n"
        parts.append(out)
        locations.append((name, offset, len(out) - 1))
        offset += len(out)
    return b"".join(parts), locations
