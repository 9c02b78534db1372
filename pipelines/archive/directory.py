"""Finding a record's proof in the archive from (agency, id), with read access only.

The index (:mod:`.index`) answers with (batch id, offset, length); one ranged
GET of the bundle (:mod:`.bundle`) returns the proof, and when its batch was
upgraded with external anchors, one LIST and one GET more bring the newest
anchors object, whose anchors the proof then carries. Archives written by
earlier versions kept a directory of 16 shards per agency instead,
``ids/<agency>/<h>.json`` with ``h`` the first hex digit of SHA-256(UTF-8
record id): ``{"format": "anchorpipe.directory/1", "entries": {id: [batch id,
offset, length]}}``. Those shards are never written again; a record the index
does not know is looked up there (one more GET, only for such records), and
bundles written before bundles were per agency are read at their old key.
"""

from __future__ import annotations

import hashlib
import json

from pipelines.archive import index
from pipelines.archive.bundle import (MAX_LINE_BYTES, Location, MissingObject, bundle_key, legacy_bundle_key,
                                      newest_anchors_key, read_anchors, with_anchors)
from pipelines.core.proof import Proof, parse_proof
from pipelines.errors import InputError, StorageError, UnusableObject
from pipelines.storage import ObjectStore

DIRECTORY_FORMAT = "anchorpipe.directory/1"


def shard_key(agency: str, record_id: str) -> str:
    """Where an earlier version's directory kept ``record_id`` (read, never written)."""
    return f"ids/{agency}/{hashlib.sha256(record_id.encode()).hexdigest()[0]}.json"


def locate(store: ObjectStore, agency: str, record_id: str) -> Location | None:
    """(batch id, offset, length) of a record's proof: the index, then an earlier version's shard."""
    found = index.lookup(store, agency, record_id)
    if found is not None:
        return found
    shard = store.get(shard_key(agency, record_id))
    entry = json.loads(shard)["entries"].get(record_id) if shard else None
    return None if entry is None else (entry[0], entry[1], entry[2])


def fetch_proof(store: ObjectStore, agency: str, record_id: str) -> Proof:
    """Find and parse a record's archived proof, the newest: with the anchors of its batch's latest upgrade
    (one LIST more). InputError if it is not archived."""
    found = locate(store, agency, record_id)
    if found is None:
        raise InputError(f"no archived proof for agency {agency!r} record {record_id!r}")
    batch_id, offset, length = found
    upgrade = newest_anchors_key(store, agency, batch_id)
    try:
        return read_proof(store, (bundle_key(agency, batch_id), offset, length), agency, record_id, upgrade)
    except MissingObject:  # an archive written before bundles were per agency
        return read_proof(store, (legacy_bundle_key(batch_id), offset, length), agency, record_id)


def read_proof(store: ObjectStore, location: tuple[str, int, int], agency: str, record_id: str,
               upgrade: str | None = None) -> Proof:
    """The proof at ``(bundle key, offset, length)``: one ranged GET, checked to be the record's own; with
    ``upgrade`` (the key of the batch's newest anchors object), upgraded with its anchors (one GET more)."""
    key, offset, length = location
    if not 0 < length <= MAX_LINE_BYTES:  # the index says; a proof line is never longer
        raise UnusableObject(f"the index places {record_id!r} at {key} [{offset}, +{length}]: a proof line holds "
                             f"1 to {MAX_LINE_BYTES:,} bytes")
    raw = store.get_range(key, offset, length)
    if raw is None:
        raise MissingObject(f"{key} is missing from {store.describe()}")
    if upgrade is not None:
        document = read_anchors(store, upgrade)
        try:
            raw = with_anchors(raw, document)
        except ValueError as exc:
            raise StorageError(f"{upgrade} does not fit the proof at {key} [{offset}, +{length}]: {exc}") from None
    proof = parse_proof(raw)
    if (proof.record.agency, proof.record.id) != (agency, record_id):
        raise StorageError(f"the proof at {key} [{offset}, +{length}] is another record's, not {record_id!r}")
    return proof
