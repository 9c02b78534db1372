"""Offline verification of a proof, in numbered steps, under the auditor's policy; no I/O.

VALID means: the record is committed in a batch whose root is anchored under a
key the auditor pinned, and every anchor kind the auditor requires verified. A
proof's own claims decide nothing: a proof without anchors, or whose anchors
nothing pinned can check, is :class:`NotAnchored`, never valid.

Each step either passes, adding a line to the report, or raises
:class:`VerificationError` saying what was expected and what was found.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from pipelines.core import merkle
from pipelines.core.anchors import ANCHOR_KINDS, TlogAnchor
from pipelines.core.checkpoint import Checkpoint, open_signed_checkpoint
from pipelines.core.commitment import record_leaf_hash
from pipelines.core.logentry import batch_entry
from pipelines.core.note import Verifier
from pipelines.core.proof import BatchInclusion, Proof
from pipelines.errors import InputError, NoTrustedSignature, VerificationError


class NotAnchored(VerificationError):
    """Every check passed, but nothing ties the batch to a key or root the auditor pinned (or a
    required anchor kind is missing): consistent, and still not VALID."""


@dataclass(frozen=True)
class Policy:
    """What the auditor pins and requires.

    ``log_keys``: verifier keys of built-in logs. ``require``: anchor kinds that
    must each verify (``tlog``); with none required, any one verified anchor suffices.
    """

    log_keys: tuple[Verifier, ...] = ()
    require: frozenset[str] = frozenset()

    @classmethod
    def of(cls, log_keys: Iterable[Verifier] = (), require: Iterable[str] = ()) -> Policy:
        """A policy; InputError naming an unknown anchor kind."""
        kinds = frozenset(require)
        unknown = sorted(kinds - ANCHOR_KINDS)
        if unknown:
            raise InputError(f"unknown anchor kind(s) {unknown}; known: {sorted(ANCHOR_KINDS)}")
        return cls(tuple(log_keys), kinds)

    def describe(self) -> str:
        keys = ", ".join(f"{k.name}+{k.id:08x}" for k in self.log_keys) or "none"
        return f"pinned log keys: {keys}; required anchors: {', '.join(sorted(self.require)) or 'any one'}"


@dataclass
class Report:
    """What a verification checked, in order, and what it did not."""

    checks: list[str] = field(default_factory=list)
    content_checked: bool = False
    anchored: dict[str, str] = field(default_factory=dict)  # anchor kind -> what it proved, under which key

    def ok(self, line: str) -> None:
        self.checks.append(line)


def verify_inclusion(proof: Proof, *, content_sha256: bytes | None = None) -> Report:
    """Steps 1-3: the leaf commits to the record (and to ``content_sha256`` if given), under the
    batch root the proof names. Not a verdict: the root itself is unanchored here."""
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
        report.content_checked = True
    # Step 3: the leaf is in the batch under the stated root.
    b = proof.batch
    merkle.verify_inclusion(b.index, b.size, leaf, [bytes.fromhex(h) for h in b.path], bytes.fromhex(b.root))
    report.ok(f"leaf {b.index} of {b.size} is included in batch {b.id} with root {b.root}")
    return report


def verify_proof(proof: Proof, policy: Policy, *, content_sha256: bytes | None = None) -> Report:
    """Verify ``proof`` offline under ``policy``.

    Raises :class:`VerificationError` on the first failed step, and
    :class:`NotAnchored` when every step passed but the batch is not anchored
    under anything pinned or a required anchor kind did not verify.
    """
    report = verify_inclusion(proof, content_sha256=content_sha256)
    check_anchors(proof.anchors, proof.batch, policy, report)
    return report


def check_anchors(anchors: Sequence[TlogAnchor], batch: BatchInclusion, policy: Policy, report: Report) -> None:
    """Step 4 and the verdict: every anchor that something pinned can check must verify; then the policy."""
    unchecked = []
    for n, anchor in enumerate(anchors):
        if not policy.log_keys:
            unchecked.append(f"anchor {n} ({anchor.type} {anchor.origin}): no log key pinned")
            continue
        try:
            line = verify_tlog_anchor(anchor, batch, list(policy.log_keys))
        except NoTrustedSignature:  # signed, but by no key the auditor pinned: it vouches for nothing
            unchecked.append(f"anchor {n} ({anchor.type} {anchor.origin}): its checkpoint is signed by no pinned key")
            continue
        report.ok(line)
        report.anchored.setdefault(anchor.type, line)
    missing = sorted(policy.require - set(report.anchored))
    if report.anchored and not missing:
        return
    if not anchors:
        why = "the proof carries no anchor"
    elif missing:
        why = f"required anchor kind(s) {missing} did not verify"
    else:
        why = "; ".join(unchecked)
    raise NotAnchored(f"consistent but not anchored under a pinned key: {why} ({policy.describe()})")


@lru_cache(maxsize=64)
def _open_checkpoint(note: str, keys: tuple[Verifier, ...], origin: str) -> tuple[Checkpoint, tuple[str, ...]]:
    """Checkpoints repeat across a batch's proofs: verify each signature once (failures are not cached)."""
    cp, signers = open_signed_checkpoint(note, list(keys), origin)
    return cp, tuple(signers)


def verify_tlog_anchor(anchor: TlogAnchor, batch: BatchInclusion, log_keys: list[Verifier]) -> str:
    """Check a ``tlog`` receipt: signed checkpoint, then the batch's entry under its root."""
    # 4a: the checkpoint is signed by a pinned key and names the anchor's log.
    cp, signers = _open_checkpoint(anchor.checkpoint, tuple(log_keys), anchor.origin)
    # 4b: the log entry is exactly this batch's id, root, size and seal time.
    entry = batch_entry(batch.id, bytes.fromhex(batch.root), batch.size, batch.sealed_at)
    # 4c: the entry is at the anchor's index in the checkpointed tree.
    merkle.verify_inclusion(
        anchor.index, cp.size, merkle.leaf_hash(entry), [bytes.fromhex(h) for h in anchor.path], cp.root
    )
    return (f"batch is entry {anchor.index} of log {cp.origin!r} at size {cp.size}, "
            f"checkpoint signed by pinned key {', '.join(signers)}")


def verify_batch(proofs: Sequence[Proof], policy: Policy) -> Report:
    """Audit a whole batch (an archived bundle): every proof verifies, none is missing or extra.

    All proofs must name the same batch (id, root, size, seal time) and carry the
    same anchors, which are checked once; indices must be exactly 0 .. size-1,
    so a dropped or duplicated record fails. Raises like :func:`verify_proof`.
    """
    if not proofs:
        raise VerificationError("an empty bundle proves nothing")
    first = proofs[0]
    seen: set[int] = set()
    for n, proof in enumerate(proofs):
        b = proof.batch
        if (b.id, b.root, b.size, b.sealed_at) != (first.batch.id, first.batch.root, first.batch.size,
                                                    first.batch.sealed_at):
            raise VerificationError(f"proof {n} is of batch {b.id} root {b.root}, not {first.batch.id} "
                                    f"root {first.batch.root}")
        if proof.anchors != first.anchors:
            raise VerificationError(f"proof {n} (record {proof.record.id!r}) carries other anchors than proof 0")
        if b.index in seen:
            raise VerificationError(f"leaf {b.index} appears twice (proof {n})")
        seen.add(b.index)
        try:
            verify_inclusion(proof)
        except VerificationError as exc:
            raise VerificationError(f"proof {n} (record {proof.record.id!r}): {exc}") from exc
    if len(seen) != first.batch.size:
        raise VerificationError(f"the bundle has {len(seen)} of the batch's {first.batch.size} records: "
                                "some are missing")
    report = Report()
    report.ok(f"all {first.batch.size} records of batch {first.batch.id} (root {first.batch.root}) are included, "
              "none missing")
    check_anchors(first.anchors, first.batch, policy, report)
    return report
