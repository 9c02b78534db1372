"""The archive's index: (agency, record id) → where its proof is, laid out as an LSM tree on object storage.

Everything is under ``ids/<agency>/`` (docs/archive.md has the format and the
figures). Each key is ``h``, the first 8 bytes of SHA-256(UTF-8 record id) as 16
hex digits; entries ``[h, id, batch id, offset, length]`` are kept sorted by ``h``
(then id) in **runs**: immutable objects cut into pages of at most
:data:`PAGE_ENTRIES` entries, one JSON array a line, found by **fences**
(``[first h, byte offset, byte length]`` per page).

- ``manifest.json``: the only object that changes (compare-and-swap). It lists
  the level-0 runs, newest first, each with its fences and a Bloom filter, and
  names the current **directory**.
- ``dir/<n>.json``: immutable; the level-1 run (fences and Bloom filter) and
  the level-2 run (fences).
- ``l0/``, ``l1/``, ``l2/``: the runs.

An archive round writes one level-0 run holding just its records and rewrites
the manifest, whose size is bounded by :data:`L0_MAX_ENTRIES`, whatever the
history: the bytes a round writes do not grow with history. Compaction
(:func:`compact`, its own task) merges level 0 into level 1, and level 1 into
level 2 once level 1 outgrows the square root of (history × level 0), which
keeps its amortised cost per record near 2·√(history / level 0) entries.

A lookup reads the manifest; if a level-0 filter matches, that run's page,
else the directory, then the level-1 page if its filter matches or the level-2
page; then the bundle: 4 GETs, however large the history (a filter's false
positive, about 0.1 % per run, costs one more).
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import json
import math
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pipelines.archive.bundle import Location
from pipelines.errors import ConflictError, StorageError
from pipelines.storage import ObjectStore

try:  # the server's fast codec; the auditor's side reads the index with the stdlib
    from orjson import dumps as _dumps, loads as _loads
except ImportError:  # pragma: no cover - exercised by the base-install test
    _loads = json.loads

    def _dumps(doc: Any) -> bytes:
        return json.dumps(doc, separators=(",", ":")).encode()

INDEX_FORMAT = "anchorpipe.index/1"
PAGE_ENTRIES = 2048
#: Level 0 is compacted into level 1 once it holds this many entries (or this many runs).
L0_MAX_ENTRIES = 100_000
L0_MAX_RUNS = 24
BLOOM_BITS_PER_ENTRY = 14
BLOOM_HASHES = 10
CAS_ROUNDS = 50

#: One index entry: (h, record id, batch id, byte offset, byte length).
Entry = tuple[str, str, str, int, int]


def key_hash(record_id: str) -> str:
    return hashlib.sha256(record_id.encode()).hexdigest()[:16]


def _bloom_positions(record_id: str, bits: int) -> Iterator[int]:
    d = hashlib.sha256(record_id.encode()).digest()
    h1, h2 = int.from_bytes(d[8:16], "big"), int.from_bytes(d[16:24], "big") | 1
    return ((h1 + i * h2) % bits for i in range(BLOOM_HASHES))


def bloom(ids: Iterable[str], n: int) -> str:
    """A Bloom filter of ``ids`` (about 0.1 % false positives), base64: bit ``p`` is bit ``p % 8`` of byte ``p // 8``."""
    arr = bytearray(max(8, -(-n * BLOOM_BITS_PER_ENTRY // 8)))  # whole bytes: readers take the size from them
    bits = len(arr) * 8
    for rid in ids:
        for p in _bloom_positions(rid, bits):
            arr[p >> 3] |= 1 << (p & 7)
    return base64.b64encode(bytes(arr)).decode()


def in_bloom(encoded: str, record_id: str) -> bool:
    arr = base64.b64decode(encoded)
    return all(arr[p >> 3] & (1 << (p & 7)) for p in _bloom_positions(record_id, len(arr) * 8))


@dataclass(frozen=True)
class Run:
    """An immutable sorted run: its key, entry count, page fences and (levels 0 and 1) Bloom filter."""

    key: str
    n: int
    fences: list[list[Any]]
    bloom: str | None = None

    def doc(self) -> dict[str, Any]:
        d: dict[str, Any] = {"key": self.key, "n": self.n, "fences": self.fences}
        if self.bloom is not None:
            d["bloom"] = self.bloom
        return d

    @classmethod
    def of(cls, d: dict[str, Any]) -> Run:
        return cls(d["key"], d["n"], d["fences"], d.get("bloom"))


def _base(agency: str) -> str:
    return f"ids/{agency}"


def write_run(store: ObjectStore, key: str, entries: list[Entry], *, with_bloom: bool) -> Run:
    """Write sorted ``entries`` as one paged, immutable run."""
    parts, fences, offset = [], [], 0
    for start in range(0, len(entries), PAGE_ENTRIES):
        page = entries[start:start + PAGE_ENTRIES]
        line = _dumps([list(e) for e in page]) + b"\n"
        fences.append([page[0][0], offset, len(line)])
        parts.append(line)
        offset += len(line)
    store.put_immutable(key, b"".join(parts))
    return Run(key, len(entries), fences, bloom((e[1] for e in entries), len(entries)) if with_bloom else None)


def _page_for(run: Run, h: str) -> list[Any] | None:
    """The fence of the page that would hold ``h`` (the last page starting at or before it)."""
    lo, hi = 0, len(run.fences)
    while lo < hi:
        mid = (lo + hi) // 2
        if run.fences[mid][0] <= h:
            lo = mid + 1
        else:
            hi = mid
    return run.fences[lo - 1] if lo else (run.fences[0] if run.fences else None)


def _find_in_run(store: ObjectStore, run: Run, record_id: str) -> Location | None:
    h = key_hash(record_id)
    fence = _page_for(run, h)
    if fence is None:
        return None
    raw = store.get_range(run.key, fence[1], fence[2])
    if raw is None:
        raise StorageError(f"index run {run.key} is missing from {store.describe()}")
    for e in _loads(raw):
        if e[0] == h and e[1] == record_id:
            return (e[2], e[3], e[4])
    return None


def _read_run(store: ObjectStore, run: Run) -> list[Entry]:
    raw = store.get(run.key)
    if raw is None:
        raise StorageError(f"index run {run.key} is missing from {store.describe()}")
    return [tuple(e) for line in raw.splitlines() if line for e in _loads(line)]  # type: ignore[misc]


def _empty_manifest() -> dict[str, Any]:
    return {"format": INDEX_FORMAT, "directory": None, "l0": [], "entries": 0}


def _manifest(store: ObjectStore, agency: str) -> tuple[dict[str, Any], str | None]:
    found = store.get_versioned(f"{_base(agency)}/manifest.json")
    if found is None:
        return _empty_manifest(), None
    doc = _loads(found[0])
    if doc.get("format") != INDEX_FORMAT:
        raise StorageError(f"{_base(agency)}/manifest.json has format {doc.get('format')!r}, not {INDEX_FORMAT}")
    return doc, found[1]


def add_round(store: ObjectStore, agency: str, entries: list[tuple[str, Location]]) -> bool:
    """Index one archive round's ``(record id, location)`` entries of ``agency``: one new level-0 run and
    one manifest update. Returns True when level 0 is due for :func:`compact`.

    Safe to repeat: a retried round writes a second identical run, which lookups
    read as the same answer, and compaction merges away."""
    rows = sorted((key_hash(rid), rid, *loc) for rid, loc in entries)
    run = write_run(store, f"{_base(agency)}/l0/{secrets.token_hex(8)}.json", rows, with_bloom=True)  # type: ignore[arg-type]
    for _ in range(CAS_ROUNDS):
        doc, version = _manifest(store, agency)
        doc["l0"] = [run.doc(), *doc["l0"]]
        doc["entries"] += run.n
        try:
            store.put_if_version(f"{_base(agency)}/manifest.json", _dumps(doc), version)
        except ConflictError:
            continue  # another archiver changed the manifest: add to the new one
        return sum(r["n"] for r in doc["l0"]) >= L0_MAX_ENTRIES or len(doc["l0"]) >= L0_MAX_RUNS
    raise StorageError(f"{_base(agency)}/manifest.json: too much contention", transient=True)


def lookup(store: ObjectStore, agency: str, record_id: str) -> Location | None:
    """Where ``record_id``'s proof is, or None: at most three GETs (manifest, directory, page) here."""
    found = store.get(f"{_base(agency)}/manifest.json")
    if found is None:
        return None
    doc = _loads(found)
    for d in doc["l0"]:  # newest first
        run = Run.of(d)
        if in_bloom(run.bloom or "", record_id):
            loc = _find_in_run(store, run, record_id)
            if loc is not None:
                return loc
    if not doc["directory"]:
        return None
    raw = store.get(doc["directory"])
    if raw is None:
        raise StorageError(f"index directory {doc['directory']} is missing from {store.describe()}")
    directory = _loads(raw)
    if directory.get("l1"):
        l1 = Run.of(directory["l1"])
        if in_bloom(l1.bloom or "", record_id):
            loc = _find_in_run(store, l1, record_id)
            if loc is not None:
                return loc
    return _find_in_run(store, Run.of(directory["l2"]), record_id) if directory.get("l2") else None


def _merge(runs: list[list[Entry]]) -> list[Entry]:
    """Merge sorted runs into one, each (h, id) once; the same id at two locations is a conflict."""
    out: list[Entry] = []
    for e in heapq.merge(*runs):
        if out and out[-1][:2] == e[:2]:
            if out[-1][2:] != e[2:]:
                raise ConflictError(f"record {e[1]!r} is indexed in batches {out[-1][2]} and {e[2]}")
            continue
        out.append(e)
    return out


def compact(store: ObjectStore, agency: str) -> dict[str, int]:
    """Merge ``agency``'s level-0 runs into level 1, and level 1 into level 2 when it outgrows
    √(entries × L0_MAX_ENTRIES). Writes new runs and a new directory, then swaps the manifest; lookups
    see the old or the new layout, never a mix. Returns the entries merged at each level (empty: nothing
    to do). Idempotent and safe to race: the loser's objects are left unused."""
    doc, _ = _manifest(store, agency)
    taken = [Run.of(d) for d in doc["l0"]]
    if not taken:
        return {}
    old_dir = _loads(store.get(doc["directory"]) or b"{}") if doc["directory"] else {}
    l1 = Run.of(old_dir["l1"]) if old_dir.get("l1") else None
    l2 = Run.of(old_dir["l2"]) if old_dir.get("l2") else None
    merged = _merge([_read_run(store, r) for r in taken] + ([_read_run(store, l1)] if l1 else []))
    limit = max(L0_MAX_ENTRIES, int(math.sqrt(doc["entries"] * L0_MAX_ENTRIES)))
    tag = secrets.token_hex(8)
    stats = {"l1": len(merged)}
    if len(merged) > limit:  # level 1 is full: everything goes down to level 2
        merged = _merge([merged] + ([_read_run(store, l2)] if l2 else []))
        new_dir = {"l1": None, "l2": write_run(store, f"{_base(agency)}/l2/{tag}.json", merged, with_bloom=False).doc()}
        stats["l2"] = len(merged)
    else:
        new_dir = {"l1": write_run(store, f"{_base(agency)}/l1/{tag}.json", merged, with_bloom=True).doc(),
                   "l2": l2.doc() if l2 else None}
    dir_key = f"{_base(agency)}/dir/{tag}.json"
    store.put_immutable(dir_key, _dumps({"format": INDEX_FORMAT, **new_dir}))
    gone = {r.key for r in taken}
    for _ in range(CAS_ROUNDS):
        now, version = _manifest(store, agency)
        if now["directory"] != doc["directory"] or not gone <= {d["key"] for d in now["l0"]}:
            return {}  # another compaction won: its layout stands, ours is left unused
        now["l0"] = [d for d in now["l0"] if d["key"] not in gone]
        now["directory"] = dir_key
        try:
            store.put_if_version(f"{_base(agency)}/manifest.json", _dumps(now), version)
            return stats
        except ConflictError:
            continue  # an archive round added a run meanwhile: keep it
    raise StorageError(f"{_base(agency)}/manifest.json: too much contention", transient=True)
