"""``anchorpipe audit``: check a whole archive with read-only access, as an auditor trusting only pins.

1. The log: its checkpoint under a pinned key, its root recomputed from the tiles,
   consistency with every checkpoint the auditor saved earlier (a fork is reported
   with both checkpoints), and the pinned witnesses' cosignatures on its newest
   cosigned checkpoint.
2. Completeness: every batch in the log has its bundle in the archive and every
   bundle's batch is in the log (nothing dropped, nothing extra).
3. Every bundle (or ``--agency``'s, or a random sample of proofs), with the anchors
   of its newest upgrade, verified whole under the auditor's policy
   (:func:`pipelines.core.verify.verify_bundle`), in worker processes; each
   result is appended to a state file as it comes, so an interrupted audit
   resumes where it stopped.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import os
import random
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.archive.bundle import MAX_LINE_BYTES, bundle_keys, max_bundle_bytes, read_anchors, upgraded_bundle
from pipelines.audit.forks import check_saved
from pipelines.core.cosignature import WitnessKey, verify_cosignatures
from pipelines.core.logentry import parse_batch_entry
from pipelines.core.note import Verifier
from pipelines.core.proof import parse_proof
from pipelines.core.policy import Policy
from pipelines.core.verify import NotAnchored, verify_bundle, verify_proof
from pipelines.errors import AnchorpipeError, VerificationError
from pipelines.ledger.tlog import LogReader
from pipelines.storage import ObjectStore, open_store

@dataclass(frozen=True)
class Pins:
    """What the auditor pins and requires, as texts (so worker processes can rebuild the policy)."""

    log_vkeys: tuple[str, ...]
    witness_vkeys: tuple[str, ...] = ()
    witness_quorum: int | None = None
    tsa_roots_pem: bytes = b""
    evm_blocks: tuple[tuple[int, tuple[str, ...]], ...] = ()
    require: tuple[str, ...] = ()
    expression: str | None = None

    def policy(self) -> Policy:
        roots: list[Any] = []
        if self.tsa_roots_pem:
            from pipelines.core.tsa import load_roots

            roots = load_roots(self.tsa_roots_pem)
        return Policy.of([Verifier.parse(v) for v in self.log_vkeys], self.require, tsa_roots=roots,
                         evm_blocks={c: list(h) for c, h in self.evm_blocks}, expression=self.expression,
                         witnesses=self.witness_keys(), witness_quorum=self.witness_quorum)

    def witness_keys(self) -> list[WitnessKey]:
        return [WitnessKey.parse(v) for v in self.witness_vkeys]


@dataclass
class BundleResult:
    """One batch's bundle as audited."""

    batch: str
    agency: str
    key: str
    upgrade: str | None
    records: int
    outcome: str  # valid, invalid, not-anchored, unusable
    check: str | None = None
    message: str = ""
    sealed_at: str = ""
    anchors: dict[str, str | None] = field(default_factory=dict)  # kind -> the time it attests (verified only)
    sampled: int = 0  # with --sample: proofs of this bundle checked (0: the whole bundle)


@dataclass
class AuditResult:
    archive: str
    log: dict[str, Any]
    pins: dict[str, Any]
    bundles: list[BundleResult]
    failures: list[dict[str, Any]]  # what, where, evidence
    sample: dict[str, Any] | None = None
    started: str = ""
    finished: str = ""

    @property
    def ok(self) -> bool:
        return not self.failures and all(b.outcome == "valid" for b in self.bundles)

    def per_agency(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for b in self.bundles:
            row = out.setdefault(b.agency, {"batches": 0, "records": 0, "valid": 0, "failed": 0})
            row["batches"] += 1
            row["records"] += b.records
            row["valid" if b.outcome == "valid" else "failed"] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {"format": "anchorpipe.audit/1", "ok": self.ok, "archive": self.archive, "started": self.started,
                "finished": self.finished, "log": self.log, "pins": self.pins, "per_agency": self.per_agency(),
                "sample": self.sample, "failures": self.failures, "bundles": [asdict(b) for b in self.bundles]}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def audit_log(reader: LogReader, pins: Pins, saved: Sequence[tuple[str, str]]) -> tuple[dict[str, Any],
                                                                                      dict[str, tuple[int, str, int]],
                                                                                      list[dict[str, Any]]]:
    """The log's checks: (facts, batch id -> (index, root hex, size) of every entry, failures)."""
    failures: list[dict[str, Any]] = []
    head = reader.head()  # a checkpoint not signed by a pinned key stops the audit: nothing else can be trusted
    facts: dict[str, Any] = {"origin": head.checkpoint.origin, "size": head.checkpoint.size,
                             "root": head.checkpoint.root.hex(), "checkpoint": head.note}
    try:
        reader.check_tiles(head)
        facts["tiles"] = "the root recomputed from the tiles matches the signed checkpoint"
    except AnchorpipeError as exc:
        failures.append({"what": "log tiles", "where": reader.store.describe(), "evidence": str(exc)})
    entries: dict[str, tuple[int, str, int]] = {}
    try:
        for index, entry in enumerate(reader.entries(head.checkpoint.size)):
            batch_id, root, size, _ = parse_batch_entry(entry)
            entries[batch_id] = (index, root.hex(), size)
    except (AnchorpipeError, ValueError) as exc:
        failures.append({"what": "log entries", "where": reader.store.describe(), "evidence": str(exc)})
    try:
        consistent, forks = check_saved(reader, head, saved)
    except VerificationError as exc:  # a saved checkpoint the log's key never signed
        consistent, forks = [], []
        failures.append({"what": "a checkpoint you saved is not signed by the pinned log key", "where": "--checkpoint",
                         "evidence": str(exc)})
    facts["consistency"] = [{"saved": c.saved, "size": c.size, "proof_hashes": len(c.proof)} for c in consistent]
    failures += [{"what": "fork: the log does not extend a checkpoint you saved", "where": fork.first[0],
                  "evidence": f"{fork.what}\n{fork.evidence()}"} for fork in forks]
    if pins.witness_vkeys:
        cosigned = reader.cosigned()
        names = [c.witness for c in verify_cosignatures(cosigned.note, pins.witness_keys())] if cosigned else []
        facts["witnessed"] = {"size": cosigned.checkpoint.size if cosigned else None, "cosigned_by": names,
                              "checkpoint": cosigned.note if cosigned else None}
    return facts, entries, failures


_WORKER: dict[str, Any] = {}


def _init_worker(location: str, s3_endpoint: str | None, pins: Pins) -> None:
    _WORKER["store"] = open_store(location, s3_endpoint=s3_endpoint)
    _WORKER["policy"] = pins.policy()


def _audit_bundle(task: tuple[str, str, str, str | None, list[int] | None, str | None, int | None]) -> BundleResult:
    """Verify one bundle (with its newest upgrade's anchors), whole or the ``picks`` lines of a sample, and
    that it is the batch its name says: that id, the root the log holds for it, that agency's records."""
    batch_id, agency, key, upgrade, picks, log_root, log_size = task
    store: ObjectStore = _WORKER["store"]
    result = BundleResult(batch_id, agency, key, upgrade, 0, "unusable")
    try:
        data = store.get(key, max_bundle_bytes(log_size or 1))  # sized by what the log says, not the bundle
        if data is None:
            raise VerificationError(f"{key} vanished during the audit")
        if upgrade is not None:
            data = upgraded_bundle(data, read_anchors(store, upgrade))
        lines = [line for line in data.splitlines() if line.strip()]
        result.records = len(lines)
        if picks is None:
            report = verify_bundle(data, _WORKER["policy"])
        else:
            result.sampled = len(picks)
            if max(picks) >= len(lines):
                raise VerificationError(f"{key} holds {len(lines)} proofs, fewer than the log's batch size",
                                        "batch-path")
            for i in picks:
                report = verify_proof(parse_proof(lines[i]), _WORKER["policy"])
        first = parse_proof(lines[0])
        if (first.batch.id, first.batch.root, first.record.agency) != (batch_id, log_root, agency):
            raise VerificationError(f"{key} holds batch {first.batch.id} (root {first.batch.root}) of agency "
                                    f"{first.record.agency!r}, not batch {batch_id} of {agency!r} with the root "
                                    f"the log holds for it ({log_root})", "batch-path")
        result.sealed_at = first.batch.sealed_at
        result.anchors = {v.kind: v.time for v in report.anchors if v.verdict == "verified"}
        result.outcome = "valid"
    except NotAnchored as exc:
        result.outcome, result.check, result.message = "not-anchored", exc.check, str(exc)
    except VerificationError as exc:
        result.outcome, result.check, result.message = "invalid", exc.check, str(exc)
    except (AnchorpipeError, ValueError) as exc:
        result.outcome, result.check, result.message = "unusable", "format", str(exc)
    return result


def sample_confidence(n: int, confidence: float = 0.95) -> float:
    """With ``n`` proofs drawn at random all valid: the largest fraction of bad proofs not ruled out at
    ``confidence`` (1 - (1 - confidence)^(1/n))."""
    return 1 - (1 - confidence) ** (1 / n) if n else 1.0


def audit_archive(location: str, log_location: str, pins: Pins, *, s3_endpoint: str | None = None,
                  agency: str | None = None, sample: int | None = None, saved: Sequence[tuple[str, str]] = (),
                  workers: int | None = None, state_file: Path | None = None,
                  progress: Callable[[int, int], object] | None = None, seed: int | None = None) -> AuditResult:
    """Audit the archive at ``location`` and its log; ``progress(done, total)`` as records are checked."""
    started = now()
    store = open_store(location, s3_endpoint=s3_endpoint)
    reader = LogReader(open_store(log_location, s3_endpoint=s3_endpoint),
                       [Verifier.parse(v) for v in pins.log_vkeys])
    facts, entries, failures = audit_log(reader, pins, saved)
    found = bundle_keys(store.list_keys("proofs/"))
    for batch_id in sorted(set(entries) - set(found)):
        failures.append({"what": "dropped: a batch in the log has no bundle in the archive", "where": batch_id,
                         "evidence": f"log entry {entries[batch_id][0]}, batch root {entries[batch_id][1]}"})
    for batch_id in sorted(set(found) - set(entries)):
        failures.append({"what": "extra: a bundle whose batch is not in the log", "where": found[batch_id][1],
                         "evidence": f"batch {batch_id} is not among the log's {len(entries)} entries"})
    chosen = sorted((b, *found[b]) for b in found if agency is None or found[b][0] == agency)
    roots = {b: (root, size) for b, (_, root, size) in entries.items()}
    stamp = hashlib.sha256(json.dumps([location, log_location, asdict(pins)], default=str).encode()).hexdigest()
    done = _load_state(state_file, stamp)
    tasks: list[tuple[str, str, str, str | None, list[int] | None, str | None, int | None]] = []
    sample_info = None
    if sample is not None:
        tasks, sample_info = _sample(store, chosen, sample, seed, roots)
    else:
        tasks = [(b, a, k, u, None, *roots.get(b, (None, None))) for b, a, k, u in chosen if (k, u) not in done]
    results = [done[(k, u)] for _, _, k, u in chosen if (k, u) in done] if sample is None else []
    total = len(tasks)
    if progress:
        progress(0, total)
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1, initializer=_init_worker,
                             initargs=(location, s3_endpoint, pins)) as pool:
        for n, result in enumerate(pool.map(_audit_bundle, tasks, chunksize=1), start=1):
            results.append(result)
            if state_file is not None and sample is None:
                with state_file.open("a") as fh:
                    fh.write(json.dumps(asdict(result)) + "\n")
            if progress:
                progress(n, total)
    results.sort(key=lambda r: (r.agency, r.sealed_at, r.batch))
    for r in results:
        if r.outcome != "valid":
            failures.append({"what": f"bundle {r.outcome}" + (f" ({r.check})" if r.check else ""), "where": r.key,
                             "evidence": r.message})
    return AuditResult(store.describe(), facts, _describe_pins(pins), results, failures, sample_info, started, now())


def _sample(store: ObjectStore, chosen: list[tuple[str, str, str, str | None]], n: int, seed: int | None,
            roots: dict[str, tuple[str, int]]) -> tuple[list[tuple[str, str, str, str | None, list[int] | None,
                                                                     str | None, int | None]], dict[str, Any]]:
    """``n`` proofs drawn uniformly from the chosen bundles (their sizes read from each bundle's first line)."""
    sizes = []
    for batch_id, _, key, _ in chosen:  # the size the log signed; a bundle's own claim only without one
        if batch_id in roots:
            sizes.append(roots[batch_id][1])
            continue
        first = (store.get_range(key, 0, MAX_LINE_BYTES) or b"").split(b"\n", 1)[0]
        sizes.append(parse_proof(first).batch.size)
    starts = list(itertools.accumulate(sizes, initial=0))
    total = starts[-1]
    rng = random.Random(seed)
    picks: dict[int, list[int]] = {}
    for g in sorted(rng.sample(range(total), min(n, total))):
        k = bisect.bisect_right(starts, g) - 1
        picks.setdefault(k, []).append(g - starts[k])
    tasks = [(*chosen[k], lines, *roots.get(chosen[k][0], (None, None))) for k, lines in picks.items()]
    drawn = min(n, total)
    return tasks, {"drawn": drawn, "of": total, "confidence": 0.95,
                   "bad_fraction_below": sample_confidence(drawn) if drawn < total else 0.0}


def _load_state(state_file: Path | None, stamp: str) -> dict[tuple[str, str | None], BundleResult]:
    """Results of an interrupted audit of the same archive under the same pins (``stamp``), by (bundle,
    upgrade): a bundle upgraded since is audited again. The state of another audit is started afresh."""
    if state_file is None:
        return {}
    lines = state_file.read_text().splitlines() if state_file.exists() else []
    if not lines or lines[0] != json.dumps({"audit": stamp}):
        state_file.write_text(json.dumps({"audit": stamp}) + "\n")
        return {}
    out = {}
    for line in lines[1:]:
        try:
            r = BundleResult(**json.loads(line))
        except (ValueError, TypeError):
            continue  # a line cut short by the interruption: that bundle is audited again
        out[(r.key, r.upgrade)] = r
    return out


def _describe_pins(pins: Pins) -> dict[str, Any]:
    return {"log_keys": list(pins.log_vkeys), "witness_keys": list(pins.witness_vkeys),
            "witness_quorum": pins.policy().witness_quorum, "tsa_roots": pins.tsa_roots_pem.decode().count(
                "BEGIN CERTIFICATE"), "evm_blocks": {str(c): list(h) for c, h in pins.evm_blocks},
            "require": sorted(pins.policy().require), "policy": pins.expression}
