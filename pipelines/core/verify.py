"""Offline verification of a proof, in numbered steps; no I/O.

Each step either passes, adding a line to the report, or raises
:class:`VerificationError` saying what was expected and what was found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from pipelines.core import merkle
from pipelines.core.anchors import TlogAnchor
from pipelines.core.checkpoint import Checkpoint, open_checkpoint
from pipelines.core.commitment import record_leaf_hash
from pipelines.core.logentry import batch_entry
from pipelines.core.note import Verifier
from pipelines.core.proof import BatchInclusion, Proof
from pipelines.errors import VerificationError


@dataclass
class Report:
    """What a successful verification checked, in order."""

    checks: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    def ok(self, line: str) -> None:
        self.checks.append(line)


def verify_proof(
    proof: Proof, *, content_sha256: bytes | None = None, log_keys: list[Verifier] | None = None
) -> Report:
    """Verify ``proof`` offline; raise :class:`VerificationError` on the first failed step.

    ``content_sha256``: the digest of the record as the auditor holds it; when
    given, it must equal the digest the proof commits to. ``log_keys``: the
    built-in log's verifier keys the auditor pins; without them a ``tlog``
    anchor is reported as unchecked, never as valid.
    """
    report = Report()
    rec = proof.record
    # Step 1: the leaf hash is the commitment to exactly these record fields.
    leaf = record_leaf_hash(rec.agency, rec.id, bytes.fromhex(rec.content_sha256), bytes.fromhex(rec.salt))
    if leaf.hex() != proof.leaf_hash:
        raise VerificationError(f"leaf hash {proof.leaf_hash} does not commit to the record (computed {leaf.hex()})")
    report.ok(f"leaf hash commits to agency {rec.agency!r}, record {rec.id!r}")
    # Step 2: the auditor's copy of the record is the one committed to.
    if content_sha256 is not None:
        if content_sha256.hex() != rec.content_sha256:
            raise VerificationError(
                f"record content hashes to {content_sha256.hex()}, the proof commits to {rec.content_sha256}"
            )
        report.ok("record content matches content_sha256")
    # Step 3: the leaf is in the batch under the stated root.
    b = proof.batch
    merkle.verify_inclusion(b.index, b.size, leaf, [bytes.fromhex(h) for h in b.path], bytes.fromhex(b.root))
    report.ok(f"leaf {b.index} of {b.size} is included in batch {b.id} with root {b.root}")
    # Step 4: every anchor receipt holds.
    for n, anchor in enumerate(proof.anchors):
        if log_keys is None:
            report.unchecked.append(f"anchor {n} ({anchor.type} {anchor.origin}): no log key pinned")
            continue
        report.ok(verify_tlog_anchor(anchor, b, log_keys))
    return report


@lru_cache(maxsize=64)
def _open_checkpoint(note: str, keys: tuple[Verifier, ...], origin: str) -> Checkpoint:
    """Checkpoints repeat across a batch's proofs: verify each signature once (failures are not cached)."""
    return open_checkpoint(note, list(keys), origin)


def verify_tlog_anchor(anchor: TlogAnchor, batch: BatchInclusion, log_keys: list[Verifier]) -> str:
    """Check a ``tlog`` receipt: signed checkpoint, then the batch's entry under its root."""
    # 4a: the checkpoint is signed by a pinned key and names the anchor's log.
    cp = _open_checkpoint(anchor.checkpoint, tuple(log_keys), anchor.origin)
    # 4b: the log entry is exactly this batch's id, root, size and seal time.
    entry = batch_entry(batch.id, bytes.fromhex(batch.root), batch.size, batch.sealed_at)
    # 4c: the entry is at the anchor's index in the checkpointed tree.
    merkle.verify_inclusion(
        anchor.index, cp.size, merkle.leaf_hash(entry), [bytes.fromhex(h) for h in anchor.path], cp.root
    )
    return f"batch is entry {anchor.index} of log {cp.origin!r} at signed size {cp.size}"


def verify_batch(proofs: list[Proof], *, log_keys: list[Verifier] | None = None) -> Report:
    """Audit a whole batch (an archived bundle): every proof verifies, and none is missing or extra.

    All proofs must name the same batch (id, root, size, seal time), and their
    indices must be exactly 0 .. size-1, so a dropped or duplicated record fails.
    """
    if not proofs:
        raise VerificationError("an empty bundle proves nothing")
    first = proofs[0].batch
    seen: set[int] = set()
    report = Report()
    for n, proof in enumerate(proofs):
        b = proof.batch
        if (b.id, b.root, b.size, b.sealed_at) != (first.id, first.root, first.size, first.sealed_at):
            raise VerificationError(f"proof {n} is of batch {b.id} root {b.root}, not {first.id} root {first.root}")
        if b.index in seen:
            raise VerificationError(f"leaf {b.index} appears twice (proof {n})")
        seen.add(b.index)
        try:
            one = verify_proof(proof, log_keys=log_keys)
        except VerificationError as exc:
            raise VerificationError(f"proof {n} (record {proof.record.id!r}): {exc}") from exc
        report.unchecked = one.unchecked
    if len(seen) != first.size:
        raise VerificationError(f"the bundle has {len(seen)} of the batch's {first.size} records: some are missing")
    report.ok(f"all {first.size} records of batch {first.id} (root {first.root}) verify, none missing")
    if log_keys is not None:
        report.ok(f"the batch's anchors verify against the pinned log key{'s' if len(log_keys) > 1 else ''}")
    return report
