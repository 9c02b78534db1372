"""The archive's directory: finds a record's proof by (agency, id) in two GETs.

Layout under the archive location (docs/archive.md), beside the bundles
(:mod:`.bundle`, ``proofs/<agency>/<batch id>.ndjson``):

- ``ids/<agency>/<h>.json``: a directory shard, ``h`` the first hex digit of
  SHA-256(UTF-8 record id): ``{"format": "anchorpipe.directory/1", "entries":
  {id: [batch id, byte offset, byte length]}}``, updated by compare-and-swap.

An auditor with read access finds a proof with two GETs: the shard, then a
ranged GET of the bundle.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pipelines.archive.bundle import Location, bundle_key, legacy_bundle_key
from pipelines.core.proof import Proof, parse_proof
from pipelines.errors import ConflictError, InputError, StorageError
from pipelines.storage import ObjectStore

try:  # the server's fast codec; the auditor's side (``proof get``) reads shards with the stdlib
    from orjson import dumps as _dumps, loads as _loads
except ImportError:  # pragma: no cover - exercised by the base-install test
    _loads = json.loads

    def _dumps(doc: Any) -> bytes:
        return json.dumps(doc, separators=(",", ":")).encode()

DIRECTORY_FORMAT = "anchorpipe.directory/1"
CAS_ROUNDS = 50
#: Shards merged at once by one archive round: S3 latency overlaps, threads and connections stay bounded.
MAX_PARALLEL_SHARDS = 8


def shard_key(agency: str, record_id: str) -> str:
    return f"ids/{agency}/{hashlib.sha256(record_id.encode()).hexdigest()[0]}.json"


def update_directory(store: ObjectStore, entries: Iterable[tuple[str, str, Location]]) -> int:
    """Add ``(agency, record id, location)`` entries to their shards; return how many shards were written.

    Idempotent: an entry already present with the same location is skipped; a
    different location for the same id is a ConflictError (ids are unique per agency).
    """
    shards: dict[str, dict[str, Location]] = defaultdict(dict)
    for agency, rid, loc in entries:
        shards[shard_key(agency, rid)][rid] = loc
    if len(shards) <= 1:
        return sum(_merge_shard(store, key, new) for key, new in shards.items())
    with ThreadPoolExecutor(max_workers=min(len(shards), MAX_PARALLEL_SHARDS)) as pool:
        return sum(pool.map(lambda item: _merge_shard(store, *item), sorted(shards.items())))


def _merge_shard(store: ObjectStore, key: str, new: dict[str, Location]) -> int:
    for _ in range(CAS_ROUNDS):
        found = store.get_versioned(key)
        doc = _loads(found[0]) if found else {"format": DIRECTORY_FORMAT, "entries": {}}
        entries = doc["entries"]
        missing = {}
        for rid, loc in new.items():
            old = entries.get(rid)
            if old is None:
                missing[rid] = list(loc)
            elif tuple(old) != tuple(loc):
                raise ConflictError(f"{key}: record {rid!r} is already archived in batch {old[0]}")
        if not missing:
            return 0
        entries.update(missing)
        try:
            store.put_if_version(key, _dumps(doc), found[1] if found else None)
            return 1
        except ConflictError:
            continue  # another archiver updated the shard: merge again
    raise StorageError(f"{key}: too much contention updating the directory", transient=True)


def fetch_proof(store: ObjectStore, agency: str, record_id: str) -> Proof:
    """Find and parse a record's archived proof: two GETs. InputError if it is not archived."""
    shard = store.get(shard_key(agency, record_id))
    entry = _loads(shard)["entries"].get(record_id) if shard else None
    if entry is None:
        raise InputError(f"no archived proof for agency {agency!r} record {record_id!r}")
    batch_id, offset, length = entry
    raw = store.get_range(bundle_key(agency, batch_id), offset, length)
    if raw is None:  # an archive written before bundles were per agency
        raw = store.get_range(legacy_bundle_key(batch_id), offset, length)
    if raw is None:
        raise StorageError(f"{bundle_key(agency, batch_id)} is missing from {store.describe()}")
    proof = parse_proof(raw)
    if (proof.record.agency, proof.record.id) != (agency, record_id):
        raise StorageError(f"directory entry for {record_id!r} points at another record's proof")
    return proof
