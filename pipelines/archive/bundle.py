"""Batch bundles: every proof of a batch as one NDJSON object, ``proofs/<agency>/<batch id>.ndjson``.

A batch whose proofs are upgraded with external anchors gets an anchors object,
``proofs/<agency>/<batch id>.u<log size>.json``: its proofs as upgraded are the
bundle's lines with their anchors (the last member, the same for every proof of
the batch) replaced by that object's (:func:`with_anchors`). Bundles and anchors
objects are written once and never replaced; readers take the newest.

Batches are sealed per agency, so a bundle holds one agency's proofs and read
access can be granted per agency prefix (docs/archive.md). Archives written
before that keep their bundles at ``proofs/<batch id>.ndjson``, which readers
still find (:func:`legacy_bundle_key`).
"""

from __future__ import annotations

from collections.abc import Sequence

from pipelines.core.anchors import Anchor
from pipelines.core.batch import SealedBatch
from pipelines.core.proof import ANCHORS_MEMBER
from pipelines.errors import StorageError
from pipelines.storage import ObjectStore

#: Where one record's proof is: (batch id, byte offset in the bundle, byte length).
Location = tuple[str, int, int]
ANCHORS_FORMAT = "anchorpipe.anchors/1"
#: The most one proof line of a bundle, and one anchors object, may hold when read back (an archive handed
#: to an auditor may be hostile). A line is a record (id of at most 256 bytes, digest, salt), a path of at
#: most 64 hashes and the batch's receipts: a few KiB in practice; the bounds leave room for many witnesses.
MAX_LINE_BYTES = 64 << 10
MAX_ANCHORS_BYTES = 64 << 10


def max_bundle_bytes(size: int) -> int:
    """The most a bundle of a batch of ``size`` records (as the log says) may hold."""
    return max(size, 1) * MAX_LINE_BYTES


def bundle_key(agency: str, batch_id: str) -> str:
    return f"proofs/{agency}/{batch_id}.ndjson"


def legacy_bundle_key(batch_id: str) -> str:
    """Where archives written before per-agency batches keep a bundle (read, never written)."""
    return f"proofs/{batch_id}.ndjson"


def anchors_key(agency: str, batch_id: str, upgrade: int) -> str:
    """Where a batch's anchors after the external round at log size ``upgrade`` are (written once)."""
    return f"proofs/{agency}/{batch_id}.u{upgrade}.json"


def anchors_version(key: str) -> int:
    """The log size of an anchors object's round, from its key."""
    return int(key.rsplit(".u", 1)[1].removesuffix(".json"))


def newest_anchors_key(store: ObjectStore, agency: str, batch_id: str) -> str | None:
    """The newest anchors object of a batch (one LIST), None if it was never upgraded."""
    keys = [k for k in store.list_keys(f"proofs/{agency}/{batch_id}.u") if k.endswith(".json")]
    return max(keys, key=anchors_version) if keys else None


def anchors_document(batch_id: str, anchors: Sequence[Anchor]) -> bytes:
    """An upgrade's object: the batch's new anchors, as every one of its proofs now carries them."""
    import orjson

    return orjson.dumps({"format": ANCHORS_FORMAT, "batch": batch_id,
                         "anchors": [a.model_dump(mode="json") for a in anchors]})


class MissingObject(StorageError):
    """An object the archive's own records point at (a bundle, an anchors object) is not in it."""


def read_anchors(store: ObjectStore, key: str) -> bytes:
    """An upgrade's anchors object, read to at most :data:`MAX_ANCHORS_BYTES`; MissingObject if it is gone."""
    document = store.get(key, MAX_ANCHORS_BYTES)
    if document is None:
        raise MissingObject(f"{key} is missing from {store.describe()}")
    return document


def with_anchors(line: bytes, document: bytes) -> bytes:
    """One proof line with its anchors replaced by an upgrade's (:func:`upgraded_bundle` of one line)."""
    return upgraded_bundle(line, document).rstrip(b"\n")


def upgraded_bundle(data: bytes, document: bytes) -> bytes:
    """A bundle's proofs (or one proof line) with their anchors replaced by an upgrade's
    (``anchors_document``): a proof's last member is its batch's anchors, so each line keeps its bytes up to
    that member and the result is the self-contained upgraded proof. ValueError if the object is not this
    batch's or a line does not end so. The one reader of upgrades (the API, ``proof get``, ``audit`` and the
    demo use it); the standard library's JSON only: auditors run this too."""
    import json

    doc = json.loads(document)
    anchors = json.dumps(doc.get("anchors"), separators=(",", ":")).encode()
    out = []
    for line in data.splitlines():
        if not line.strip():
            continue
        cut = line.rfind(ANCHORS_MEMBER)
        if cut < 0 or not line.endswith(b"}"):
            raise ValueError("a proof does not end with its anchors")
        out.append(line[:cut] + ANCHORS_MEMBER + anchors + b"}")
    if doc.get("format") != ANCHORS_FORMAT or (out and json.loads(out[0])["batch"]["id"] != doc.get("batch")):
        raise ValueError("the anchors object is not this bundle's batch's")
    return b"\n".join(out) + b"\n"


def bundle_keys(keys: Sequence[str]) -> dict[str, tuple[str, str, str | None]]:
    """From a listing of ``proofs/``: batch id -> (agency, bundle key, newest anchors object key or None)."""
    newest: dict[str, str] = {}
    for key in keys:
        if key.endswith(".json") and ".u" in key.rsplit("/", 1)[-1]:
            batch_id = key.rsplit("/", 1)[1].rsplit(".u", 1)[0]
            if batch_id not in newest or anchors_version(key) > anchors_version(newest[batch_id]):
                newest[batch_id] = key
    out = {}
    for key in keys:
        parts = key.split("/")
        if len(parts) == 3 and key.endswith(".ndjson") and ".u" not in parts[2]:
            batch_id = parts[2].removesuffix(".ndjson")
            out[batch_id] = (parts[1], key, newest.get(batch_id))
    return out


def key_for(batch: SealedBatch) -> str:
    """Where ``batch``'s bundle goes: under its agency (a batch holds one agency's records)."""
    agencies = {c.agency for c in batch.commitments}
    if len(agencies) != 1:
        raise ValueError(f"batch {batch.id} holds records of {len(agencies)} agencies, not one")
    return bundle_key(agencies.pop(), batch.id)


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


def write_batch(store: ObjectStore, batch: SealedBatch, anchors: Sequence[Anchor]) -> tuple[str, list[Location], int]:
    """Write the batch's bundle once (an identical re-write succeeds); return its key, the locations and
    its size in bytes."""
    data, locations = build_bundle(batch, anchors)
    key = key_for(batch)
    store.put_immutable(key, data)
    return key, locations, len(data)
